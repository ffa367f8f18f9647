package bus

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// A key is claimed once; a release by a run that does not hold it changes
// nothing, and a release by the run that holds it (one that could not be
// started) lets the next request claim it.
func TestIdempotencyKeysAreClaimedOnceAndReleasedByTheirRun(t *testing.T) {
	g := NewWithT(t)
	js, _ := givenJetStream(t)
	ctx := context.Background()
	p := &plan.Plan{Namespace: "default", Workflow: "w", Entry: plan.Entry{IdempotencyWindow: plan.D(time.Hour)},
		Stream: &plan.Stream{IdempotencyBucket: "idem_w"}}
	g.Expect(ensureBucket(ctx, js, IdempotencyConfig(p, DefaultStorage), false)).To(Succeed())
	idem, err := WaitIdempotency(ctx, js, p)
	g.Expect(err).NotTo(HaveOccurred())
	st, err := idem.KV.Status(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(st.TTL()).To(Equal(time.Hour))

	held, err := idem.Claim(ctx, "k1", Claim{RunID: "r1", Body: "a"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(held).To(BeNil(), "the first claim wins")
	held, err = idem.Claim(ctx, "k1", Claim{RunID: "r2", Body: "a"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(held).To(Equal(&Claim{RunID: "r1", Body: "a"}))

	g.Expect(idem.Release(ctx, "k1", "r2")).To(Succeed())
	got, err := idem.Get(ctx, "k1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.RunID).To(Equal("r1"))
	g.Expect(idem.Release(ctx, "k1", "r1")).To(Succeed())
	got, err = idem.Get(ctx, "k1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(BeNil())
	held, err = idem.Claim(ctx, "k1", Claim{RunID: "r3", Body: "b"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(held).To(BeNil())

	_, err = idem.Claim(ctx, "bad key", Claim{RunID: "r4"})
	g.Expect(err).To(MatchError(ContainSubstring("Idempotency-Key header")))
}
