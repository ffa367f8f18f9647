package bus

import (
	"context"
	"testing"
	"time"

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
	js, _ := givenJetStream(t)
	ctx := context.Background()
	p := &plan.Plan{Namespace: "default", Workflow: "w", Stream: &plan.Stream{Name: "PB_default_w", Subjects: []string{"pb.default.w.>"}, RunsBucket: "runs_w"}}
	for range 2 { // set up again, the store is the same
		g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
		runs, err := WaitRuns(ctx, js, p)
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

// EnsureResources creates the stream and buckets, writes nothing to those
// that have the Plan's settings, brings back a setting changed behind its
// back, and adds the read model's bucket when the Plan gains one. The roles
// open what it made.
func TestEnsureResourcesCreatesAndUpdatesOnlyWhatDiffers(t *testing.T) {
	g := NewWithT(t)
	js, url := givenJetStream(t)
	ctx := context.Background()
	p := &plan.Plan{Namespace: "shop", Workflow: "wf",
		Stream: &plan.Stream{Name: "PB_shop_wf", Subjects: []string{"pb.shop.wf.>"}, RunsBucket: "pb_shop_wf_runs"}}

	// Before the manager made them, a role waits.
	short, cancel := context.WithTimeout(ctx, time.Second)
	g.Expect(WaitStream(short, js, p)).To(MatchError(HavePrefix("wait for stream PB_shop_wf (the manager creates it): ")))
	cancel()

	g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
	g.Expect(WaitStream(ctx, js, p)).To(Succeed())
	_, err := WaitRuns(ctx, js, p)
	g.Expect(err).NotTo(HaveOccurred())

	// The stream API's create and update requests, seen by another client,
	// in order with a marker the setting-up client publishes after.
	spy, err := nats.Connect(url)
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(spy.Close)
	seen := make(chan *nats.Msg, 16)
	for _, subject := range []string{"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "test.marker"} {
		_, err := spy.ChanSubscribe(subject, seen)
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(spy.Flush()).To(Succeed())
	writes := func() []string {
		g.Expect(js.Conn().Publish("test.marker", nil)).To(Succeed())
		var subjects []string
		for m := range seen {
			if m.Subject == "test.marker" {
				return subjects
			}
			subjects = append(subjects, m.Subject)
		}
		return subjects
	}

	g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
	g.Expect(writes()).To(BeEmpty(), "nothing is written when nothing differs")

	s, err := js.Stream(ctx, p.Stream.Name)
	g.Expect(err).NotTo(HaveOccurred())
	changed := s.CachedInfo().Config
	changed.MaxAge = time.Hour
	_, err = js.UpdateStream(ctx, changed)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(writes()).To(ConsistOf("$JS.API.STREAM.UPDATE." + p.Stream.Name))
	g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
	g.Expect(writes()).To(ConsistOf("$JS.API.STREAM.UPDATE." + p.Stream.Name))
	s, err = js.Stream(ctx, p.Stream.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.CachedInfo().Config.MaxAge).To(Equal(StreamConfig(p, DefaultStorage).MaxAge))

	p.ReadModel = &plan.ReadModel{Bucket: "pb_shop_wf_read"}
	g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
	g.Expect(writes()).To(ConsistOf("$JS.API.STREAM.CREATE.KV_" + p.ReadModel.Bucket))
	_, err = WaitReadModel(ctx, js, p)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(EnsureResources(ctx, js, p, DefaultStorage)).To(Succeed())
	g.Expect(writes()).To(BeEmpty())
}

// givenJetStream starts a broker until the test ends and is a JetStream
// client of it, and its URL.
func givenJetStream(t *testing.T) (jetstream.JetStream, string) {
	t.Helper()
	url := natstest.Start(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, url
}
