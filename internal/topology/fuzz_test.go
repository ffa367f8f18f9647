package topology

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// FuzzCompile feeds Compile Workflows as JSON, seeded with config/samples,
// the specs TestCompileErrors refuses and a few more. Inputs may be specs the API server's CEL rules
// would reject. Compile must never panic; it either refuses with a *Error or
// returns a plan that holds every invariant, the same plan each time.
//
//	go test -run='^$' -fuzz=FuzzCompile -fuzztime=60s ./internal/topology/
func FuzzCompile(f *testing.F) {
	ws := samples(f)
	for _, name := range slices.Sorted(maps.Keys(ws)) {
		b, err := json.Marshal(ws[name])
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, tc := range errorCases {
		w := workflow(f, cmp.Or(tc.wf, "wf"), tc.spec)
		b, err := json.Marshal(w)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, seed := range []string{
		`{"metadata":{"name":"c"},"spec":{"style":"sync-orchestrated","steps":[{"name":"a","dependsOn":["b"]},{"name":"b","dependsOn":["a"]}]}}`,
		`{"metadata":{"name":"d"},"spec":{"style":"sync-chain","steps":[{"name":"a"},{"name":"a","dependsOn":["a"]}]}}`,
		`{"metadata":{"name":"e","namespace":"x"},"spec":{"style":"choreography","entry":{"event":"s","completesOn":["t"]},"steps":[{"name":"a","subscribes":["s","u"],"emits":["t","u"]}]}}`,
		`{"metadata":{"name":"h"},"spec":{"style":"hybrid","entry":{"event":"s"},"steps":[{"name":"a","emits":["p_q","p.q"]},{"name":"b","subscribes":["p.q","p_q","s"]},{"name":"c","dependsOn":["a"],"resilience":{"retry":{"attempts":0}}}],"readModel":{"events":["p.q"],"key":"/k"}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var w v1alpha1.Workflow
		if err := json.Unmarshal(data, &w); err != nil {
			return // not a Workflow: nothing to compile
		}
		p, err := Compile(&w)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("Compile refused with %T %v, want a *Error with problems", err, err)
			}
			for _, pr := range cerr.Problems {
				if pr.Message == "" || pr.Reason == "" {
					t.Fatalf("problem without message or reason: %+v", pr)
				}
			}
			if _, again := Compile(&w); again == nil || again.Error() != err.Error() {
				t.Fatalf("refusal is not stable: %v, then %v", err, again)
			}
			return
		}
		checkInvariants(t, &w, p)
		first, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		q, err := Compile(&w)
		if err != nil {
			t.Fatalf("second compilation failed: %v", err)
		}
		second, _ := q.Marshal()
		if !bytes.Equal(first, second) {
			t.Fatalf("two compilations differ:\n%s\n%s", first, second)
		}
		if Graph(p) != Graph(q) {
			t.Fatal("two graphs differ")
		}
	})
}

// FuzzShapes complements FuzzCompile: mutated JSON rarely keeps a valid
// shape, so here the bytes choose a small workflow (style, up to eight steps,
// their dependsOn, subscribes and emits over a pool of four events, the entry
// and the read model) and every graph problem the compiler handles comes up
// within seconds; accepted plans must also pass checkEventReach.
//
//	go test -run='^$' -fuzz=FuzzShapes -fuzztime=60s ./internal/topology/
func FuzzShapes(f *testing.F) {
	// style, steps-1, then per step its dependsOn mask and subscribes|emits<<4,
	// then the entry (bit 7 async, bits 4-6 completesOn, bit 3 event, bits 0-1
	// which) and the read model's events.
	f.Add([]byte{0, 2, 0, 0, 1, 0, 2, 0, 0, 0})                                  // a chain
	f.Add([]byte{1, 3, 0, 0, 1, 0, 1, 0, 6, 0, 0, 0})                            // a diamond
	f.Add([]byte{2, 2, 0, 0, 1, 0, 3, 0, 0x80, 0})                               // async, fire and forget
	f.Add([]byte{3, 2, 0, 0x21, 0, 0x42, 0, 0x04, 0x48, 0x04})                   // a choreography
	f.Add([]byte{4, 5, 0, 0, 1, 0x10, 1, 0, 0, 0x01, 0, 0x21, 0, 0x02, 0, 0x01}) // hybrid with leaves
	f.Add([]byte{0x83, 2, 3, 0x11, 1, 0x22, 0, 0, 0x48, 0x0f})                   // raw: loops and cycles
	f.Fuzz(func(t *testing.T, data []byte) {
		w := shapeWorkflow(data)
		p, err := Compile(w)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) || len(cerr.Problems) == 0 {
				t.Fatalf("Compile refused with %T %v, want a *Error with problems", err, err)
			}
			return
		}
		checkInvariants(t, w, p)
		checkEventReach(t, p)
	})
}

// shapeWorkflow decodes bytes into a workflow; missing bytes read as zero.
func shapeWorkflow(data []byte) *v1alpha1.Workflow {
	at := 0
	next := func() byte {
		if at >= len(data) {
			return 0
		}
		at++
		return data[at-1]
	}
	names := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	events := []string{"e0", "e1", "e2", "e3"}
	pick := func(mask byte, pool []string) []string {
		var out []string
		for i, n := range pool {
			if mask&(1<<i) != 0 {
				out = append(out, n)
			}
		}
		return out
	}
	w := &v1alpha1.Workflow{}
	w.Name, w.Namespace = "wf", "ns"
	first := next()
	style := v1alpha1.Styles[int(first&0x7f)%len(v1alpha1.Styles)]
	// Unless the top bit asks for the raw decoding, drop what the style's CEL
	// rules forbid, so that most inputs reach the graph checks.
	tidy := first&0x80 == 0
	w.Spec.Style = style
	n := 1 + int(next())%len(names)
	for i := range n {
		s := v1alpha1.Step{Name: names[i], Image: "x"}
		s.DependsOn = pick(next(), names[:n])
		ev := next()
		s.Subscribes, s.Emits = pick(ev&0xf, events), pick(ev>>4, events)
		if tidy {
			switch {
			case !style.HasEvents():
				s.Subscribes, s.Emits = nil, nil
			case style == v1alpha1.StyleChoreography, len(s.Subscribes) > 0:
				s.DependsOn = nil
			}
			if style == v1alpha1.StyleSyncChain && len(s.DependsOn) > 1 {
				s.DependsOn = s.DependsOn[:1]
			}
		}
		w.Spec.Steps = append(w.Spec.Steps, s)
	}
	entry := next()
	sync := entry&0x80 == 0
	w.Spec.Entry = &v1alpha1.Entry{Sync: &sync, CompletesOn: pick(entry>>4&0x7, events)}
	if entry&0x8 != 0 {
		w.Spec.Entry.Event = events[entry&0x3]
	}
	if rm := pick(next()&0xf, events); len(rm) > 0 {
		w.Spec.ReadModel = &v1alpha1.ReadModel{Events: rm, Key: "/id"}
	}
	if tidy && !style.HasEvents() {
		w.Spec.Entry.Event, w.Spec.Entry.CompletesOn, w.Spec.ReadModel = "", nil, nil
	}
	if tidy && style == v1alpha1.StyleHybrid {
		w.Spec.Entry.CompletesOn = nil
	}
	return w
}

// checkEventReach re-derives, from the plan alone, what the compiler promises
// about events: every event step is reached by a chain of events from the
// entry or from orchestrated steps, and no chain comes back to a step.
func checkEventReach(t *testing.T, p *plan.Plan) {
	t.Helper()
	subscribers := map[string][]string{}
	for _, r := range p.Events {
		subscribers[r.Type] = r.Subscribers
	}
	reached := map[string]bool{}
	var visit func(event string, path []string)
	visit = func(event string, path []string) {
		for _, s := range subscribers[event] {
			if slices.Contains(path, s) {
				t.Fatalf("event loop back to %s through %v", s, path)
			}
			reached[s] = true
			for _, e := range p.Step(s).Output.Emits {
				visit(e.Type, append(slices.Clone(path), s))
			}
		}
	}
	if p.Entry.Event != "" {
		visit(p.Entry.Event, nil)
	}
	for _, s := range p.Steps {
		if s.Mode != plan.ModeEvent {
			for _, e := range s.Output.Emits {
				visit(e.Type, nil)
			}
		}
	}
	for _, s := range p.Steps {
		if s.Mode == plan.ModeEvent && !reached[s.Name] {
			t.Fatalf("event step %s is not reached by any chain of events", s.Name)
		}
	}
	for _, e := range p.Entry.CompletesOn {
		found := false
		for _, r := range p.Events {
			if r.Type == e && len(r.Emitters) > 0 && !slices.Equal(r.Emitters, []string{plan.EntryEmitter}) {
				found = true
			}
		}
		if !found {
			t.Fatalf("completion event %s has no step emitting it", e)
		}
	}
}
