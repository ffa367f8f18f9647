package bus

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
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
