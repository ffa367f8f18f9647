package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// roundTrips are the broker round trips of a workflow's runs, counted by a
// subscriber to every subject of the bench's broker while runs go one at a
// time: the requests a role sends and waits for the broker to answer (a
// JetStream publish and its ack, a KV read or write, any JetStream API
// call). Deliveries to consumers, acks, pull requests and the notification
// to the gateway are one-way, so they are not round trips.
type roundTrips struct {
	runs int
	// path are the round trips before the run's notification reached the
	// gateway holding its caller; all adds those after it (the deadline
	// check's).
	path, all int
	// other are requests in the same time that name none of the runs (a
	// read of a message by its sequence names no run), counted in all too.
	other int
	// bySubject counts them by kind (subjectKind).
	bySubject map[string]int
	// timeline is where a run's time goes: the median time from one event
	// of a run to the next, as the subscriber saw them (the caller's POST,
	// each request before the notification, the notification, the caller's
	// answer), over the runs whose events came in the most common order.
	timeline string
}

func (r roundTrips) perRun() (path, all float64) {
	return float64(r.path) / float64(r.runs), float64(r.all) / float64(r.runs)
}

// summary lists the round trips by kind, per run.
func (r roundTrips) summary() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(r.bySubject)) {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(r.bySubject[k])/float64(r.runs)))
	}
	return strings.Join(parts, ", ")
}

// checkRoundTrips reports the round trips of a workflow's runs against 2 + 2
// × the steps on its critical path: a check for an orchestrated workflow,
// whose levels are that path, a note for another.
func checkRoundTrips(rep *report, section, name string, p *plan.Plan, trips roundTrips) {
	onPath, all := trips.perRun()
	measured := fmt.Sprintf("%.1f (%.1f before the caller's answer)", all, onPath)
	label := strings.TrimSpace(name + " broker round trips per run")
	if steps := len(p.Levels); steps > 0 {
		budget := 2 + 2*steps
		rep.check(section, fmt.Sprintf("%s ≤ 2 + 2 × %d steps", label, steps), fmt.Sprint(budget),
			measured, fmt.Sprintf("%.2f", all/float64(budget)), "-", all <= float64(budget))
	} else {
		rep.notef("%s: %s: %s", section, label, measured)
	}
	rep.notef("%s: %s by kind: %s; %d requests in that time named no run (counted)", section, label, trips.summary(), trips.other)
	if trips.timeline != "" {
		rep.notef("%s: %s where a run's time goes, as a subscriber to every subject sees it: %s", section, strings.TrimSpace(name), trips.timeline)
	}
}

// countRoundTrips sends n runs to the gateway at entry, one at a time, with
// run ids of its own, and attributes every broker request that names one of
// them (in its subject, its Patchbay-Run-Id header or its body) to that run.
// It waits settle after the last run, so that the runs' deadline checks are
// counted too.
func countRoundTrips(ctx context.Context, natsURL, entry string, payload []byte, n int, settle time.Duration) (roundTrips, error) {
	rt := roundTrips{runs: n, bySubject: map[string]int{}}
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return rt, err
	}
	defer nc.Close()
	type stamped struct {
		m  *nats.Msg
		at time.Time
	}
	msgs := make(chan stamped, 1<<16)
	sub, err := nc.Subscribe(">", func(m *nats.Msg) { msgs <- stamped{m, time.Now()} })
	if err != nil {
		return rt, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return rt, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		return rt, err
	}
	prefix := "rtt-" + strings.ReplaceAll(uuid.NewString()[:8], "-", "") + "-"
	notified := map[string]bool{}
	events := map[string][]event{}
	runOf := func(m *nats.Msg) string {
		for _, s := range []string{m.Subject, m.Header.Get(contract.HeaderRunID)} {
			if i := strings.Index(s, prefix); i >= 0 && len(s) >= i+len(prefix)+4 {
				return s[i : i+len(prefix)+4]
			}
		}
		if i := bytes.Index(m.Data, []byte(prefix)); i >= 0 && len(m.Data) >= i+len(prefix)+4 {
			return string(m.Data[i : i+len(prefix)+4])
		}
		return ""
	}
	// A request is a message its sender waits to be answered; a pull
	// request is not one of a run's.
	isRequest := func(m *nats.Msg) bool {
		return m.Reply != "" && !strings.HasPrefix(m.Reply, "$JS.ACK.") && !strings.HasPrefix(m.Subject, "$JS.API.CONSUMER.MSG.NEXT.") &&
			!strings.HasPrefix(m.Subject, "$JS.FC.")
	}
	// isNotification tells the run's notification to the gateway (bus.Notify)
	// from an answer that holds its record: it names the run in its header.
	isNotification := func(m *nats.Msg, id string) bool {
		var r bus.Run
		return m.Reply == "" && m.Header.Get(contract.HeaderRunID) == id && json.Unmarshal(m.Data, &r) == nil && r.ID == id && r.Done()
	}
	count := func(sm stamped) {
		m := sm.m
		id := runOf(m)
		if id != "" && isNotification(m, id) {
			notified[id] = true
			events[id] = append(events[id], event{"notification", sm.at})
			return
		}
		if !isRequest(m) {
			return
		}
		rt.all++
		rt.bySubject[subjectKind(m.Subject)]++
		switch {
		case id == "":
			rt.other++
		case !notified[id]:
			rt.path++
			events[id] = append(events[id], event{subjectKind(m.Subject), sm.at})
		}
	}
	// Start once the broker is quiet: the earlier load's deadline checks
	// are over.
	quiet, giveUp := time.NewTimer(2*time.Second), time.After(settle+5*time.Second)
wait:
	for {
		select {
		case sm := <-msgs:
			if isRequest(sm.m) {
				quiet.Reset(2 * time.Second)
			}
		case <-quiet.C:
			break wait
		case <-giveUp:
			return rt, fmt.Errorf("the broker did not go quiet for 2s in %s", settle+5*time.Second)
		case <-ctx.Done():
			return rt, ctx.Err()
		}
	}
	drain := func() {
		for {
			select {
			case m := <-msgs:
				count(m)
			default:
				return
			}
		}
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, entry, bytes.NewReader(payload))
		if err != nil {
			return rt, err
		}
		req.Header.Set("Content-Type", "application/json")
		id := fmt.Sprintf("%s%04d", prefix, i)
		req.Header.Set(contract.HeaderRunID, id)
		posted := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return rt, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		answered := time.Now()
		if resp.StatusCode != http.StatusOK {
			return rt, fmt.Errorf("run %d answered %s", i, resp.Status)
		}
		drain()
		events[id] = append(append([]event{{"POST", posted}}, events[id]...), event{"answer", answered})
	}
	rt.timeline = timeline(events)
	end := time.After(settle)
	for {
		select {
		case m := <-msgs:
			count(m)
		case <-end:
			drain()
			return rt, nil
		case <-ctx.Done():
			return rt, ctx.Err()
		}
	}
}

// subjectKind names a request by its subject: "publish <last tokens>" for a
// stream's, "KV write" for a bucket's key, else the JetStream API call.
func subjectKind(s string) string {
	switch {
	case strings.HasPrefix(s, "$KV."):
		return "KV write"
	case strings.HasPrefix(s, "$JS.API.DIRECT.GET."), strings.HasPrefix(s, "$JS.API.STREAM.MSG.GET.KV_"):
		return "KV read"
	case strings.HasPrefix(s, "$JS.API.STREAM.MSG.GET."):
		return "stream read"
	case strings.HasPrefix(s, "$JS.API."):
		t := strings.Split(s, ".")
		return "API " + strings.Join(t[2:min(4, len(t))], ".")
	}
	t := strings.Split(s, ".")
	n := 2
	if strings.HasPrefix(t[len(t)-1], "rtt-") {
		// A subject of one run's own: <start> or <result of a step>.<run>.
		t[len(t)-1], n = "<run>", 3
		if len(t) >= 2 && t[len(t)-2] == "start" {
			n = 2
		}
	}
	return "publish " + strings.Join(t[max(0, len(t)-n):], ".")
}

// event is something that happened to a run, when the bench saw it.
type event struct {
	what string
	at   time.Time
}

// timeline is the median time between consecutive events of the runs
// whose events came in the most common order, as "POST → a 120 µs → b 80
// µs ...".
func timeline(runs map[string][]event) string {
	orders := map[string][][]event{}
	for _, evs := range runs {
		slices.SortStableFunc(evs, func(a, b event) int { return a.at.Compare(b.at) })
		var names []string
		for _, e := range evs {
			names = append(names, e.what)
		}
		k := strings.Join(names, "|")
		orders[k] = append(orders[k], evs)
	}
	var common [][]event
	for _, runs := range orders {
		if len(runs) > len(common) {
			common = runs
		}
	}
	if len(common) == 0 {
		return ""
	}
	parts := []string{common[0][0].what}
	var total []time.Duration
	for i := 1; i < len(common[0]); i++ {
		var gaps []time.Duration
		for _, evs := range common {
			gaps = append(gaps, evs[i].at.Sub(evs[i-1].at))
		}
		slices.Sort(gaps)
		parts = append(parts, fmt.Sprintf("%s %d µs", common[0][i].what, gaps[len(gaps)/2].Microseconds()))
	}
	for _, evs := range common {
		total = append(total, evs[len(evs)-1].at.Sub(evs[0].at))
	}
	slices.Sort(total)
	return fmt.Sprintf("%s (median of %d runs; POST to answer %d µs)", strings.Join(parts, " → "), len(common), total[len(total)/2].Microseconds())
}
