package plan

import (
	"testing"
	"time"
)

// TestDrainPeriod pins the bound a style switch waits for: entry.timeout in a
// sync style; in an async one each level's slowest step's every delivery,
// then each event-driven step, or entry.timeout when that is longer.
func TestDrainPeriod(t *testing.T) {
	step := func(name, mode string, maxDeliver int32, ackWait, maxDelay time.Duration) Step {
		return Step{
			Name: name, Mode: mode,
			Consumers: []Consumer{{Durable: name + "_x", MaxDeliver: maxDeliver, AckWait: D(ackWait)}},
			Policy:    Policy{Retry: Retry{MaxDelay: D(maxDelay)}},
		}
	}
	async := &Plan{
		Stream: &Stream{},
		Entry:  Entry{Timeout: D(5 * time.Second)},
		Levels: [][]string{{"a"}, {"b", "c"}},
		Steps: []Step{
			step("a", ModeOrchestrated, 3, 4*time.Second, time.Second), // 15 s
			step("b", ModeOrchestrated, 2, 2*time.Second, 0),           // 4 s
			step("c", ModeOrchestrated, 1, 10*time.Second, 0),          // 10 s, the slower of its level
			step("d", ModeEvent, 2, 3*time.Second, 0),                  // 6 s, after the DAG
		},
	}
	if got, want := async.DrainPeriod(), 31*time.Second; got != want {
		t.Errorf("async plan: %s, want %s", got, want)
	}
	async.Entry.Timeout = D(time.Minute)
	if got, want := async.DrainPeriod(), time.Minute; got != want {
		t.Errorf("async plan holding callers longer than a run: %s, want %s", got, want)
	}
	sync := &Plan{Entry: Entry{Timeout: D(10 * time.Second)}, Levels: [][]string{{"a"}}, Steps: []Step{{Name: "a", Mode: ModeOrchestrated}}}
	if got, want := sync.DrainPeriod(), 10*time.Second; got != want {
		t.Errorf("sync plan: %s, want %s", got, want)
	}
}
