package bus

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
)

func TestStreamAndBucketsFollowTheBrokersStorage(t *testing.T) {
	p := &plan.Plan{Namespace: "shop", Workflow: "wf",
		Stream:    &plan.Stream{Name: "PB_shop_wf", Subjects: []string{"pb.shop.wf.>"}, RunsBucket: "pb_shop_wf_runs"},
		ReadModel: &plan.ReadModel{Bucket: "pb_shop_wf_read"}}
	for name, tc := range map[string]struct {
		st       Storage
		replicas int
		storage  jetstream.StorageType
	}{
		"zero value":     {Storage{}, 1, jetstream.FileStorage},
		"default":        {DefaultStorage, 1, jetstream.FileStorage},
		"three on file":  {Storage{Replicas: 3, Type: jetstream.FileStorage}, 3, jetstream.FileStorage},
		"five in memory": {Storage{Replicas: 5, Type: jetstream.MemoryStorage}, 5, jetstream.MemoryStorage},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			s := StreamConfig(p, tc.st)
			g.Expect(s.Replicas).To(Equal(tc.replicas))
			g.Expect(s.Storage).To(Equal(tc.storage))
			for _, kv := range []jetstream.KeyValueConfig{RunsConfig(p, tc.st), ReadModelConfig(p, tc.st)} {
				g.Expect(kv.Replicas).To(Equal(tc.replicas), kv.Bucket)
				g.Expect(kv.Storage).To(Equal(tc.storage), kv.Bucket)
			}
		})
	}
}

// The run store reads through the stream's leader: a direct get may be
// answered by a replica that has not caught up with the record just written.
func TestRunsAreReadThroughTheLeader(t *testing.T) {
	g := NewWithT(t)
	url := natstest.Start(t)
	nc, err := nats.Connect(url)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	g.Expect(err).NotTo(HaveOccurred())
	ctx := context.Background()
	p := &plan.Plan{Namespace: "default", Workflow: "w", Stream: &plan.Stream{RunsBucket: "runs_w"}}
	for range 2 { // a second role opening the store finds it the same
		runs, err := EnsureRuns(ctx, js, p, DefaultStorage)
		g.Expect(err).NotTo(HaveOccurred())
		s, err := js.Stream(ctx, "KV_runs_w")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(s.CachedInfo().Config.AllowDirect).To(BeFalse())
		g.Expect(runs.Create(ctx, &Run{ID: "r1", Status: RunPending})).To(Or(Succeed(), MatchError(ErrRunExists)))
		r, _, err := runs.Get(ctx, "r1")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(r.Status).To(Equal(RunPending))
	}
}

// Roles that set up the run store at the same time each get a handle that
// reads: one role's create turns direct gets on again for a moment, and a
// role that bound then read through direct gets, which the broker no longer
// answered once the other role turned them off ("no responders").
func TestRunsSetUpAtOnceAllRead(t *testing.T) {
	g := NewWithT(t)
	url := natstest.Start(t)
	ctx := context.Background()
	for round := range 5 {
		p := &plan.Plan{Namespace: "default", Workflow: "w", Stream: &plan.Stream{RunsBucket: fmt.Sprintf("runs_w%d", round)}}
		const roles = 6
		handles := make([]*Runs, roles)
		var wg sync.WaitGroup
		for i := range handles {
			nc, err := nats.Connect(url)
			g.Expect(err).NotTo(HaveOccurred())
			t.Cleanup(nc.Close)
			js, err := jetstream.New(nc)
			g.Expect(err).NotTo(HaveOccurred())
			wg.Go(func() {
				runs, err := EnsureRuns(ctx, js, p, DefaultStorage)
				if err == nil {
					handles[i] = runs
				}
			})
		}
		wg.Wait()
		for i, runs := range handles {
			g.Expect(runs).NotTo(BeNil(), "role %d set the store up", i)
			_, _, err := runs.Get(ctx, "missing")
			g.Expect(err).To(MatchError(ErrNoRun), "round %d, role %d reads", round, i)
		}
	}
}
