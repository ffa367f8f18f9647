package topology

import (
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
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
			t.Skip()
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
		if string(first) != string(second) {
			t.Fatalf("two compilations differ:\n%s\n%s", first, second)
		}
		if Graph(p) != Graph(q) {
			t.Fatal("two graphs differ")
		}
	})
}
