package bus

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

func TestARunsStartAndResultsHaveSubjectsOfTheirOwn(t *testing.T) {
	g := NewWithT(t)
	s := &plan.Stream{StartSubject: "pb.ns.wf.start", ResultPrefix: "pb.ns.wf.res"}
	g.Expect(StartOf(s, "r1")).To(Equal("pb.ns.wf.start.r1"))
	g.Expect(IsStart(s, "pb.ns.wf.start.r1")).To(BeTrue())
	g.Expect(IsStart(s, "pb.ns.wf.start")).To(BeTrue(), "a start of an earlier version")
	g.Expect(IsStart(s, "pb.ns.wf.started")).To(BeFalse())
	g.Expect(IsStart(s, "pb.ns.wf.start.r1.x")).To(BeFalse())
	g.Expect(IsStart(&plan.Stream{}, "pb.ns.wf.start")).To(BeFalse())

	g.Expect(ResultOf("pb.ns.wf.res.pick", "r1")).To(Equal("pb.ns.wf.res.pick.r1"))
	for subject, want := range map[string]string{"pb.ns.wf.res.pick.r1": "pick", "pb.ns.wf.res.pick": "pick"} {
		step, ok := ResultStep(s, subject)
		g.Expect(ok).To(BeTrue(), subject)
		g.Expect(step).To(Equal(want), subject)
	}
	for _, subject := range []string{"pb.ns.wf.res", "pb.ns.wf.res.", "pb.ns.wf.cmd.pick"} {
		_, ok := ResultStep(s, subject)
		g.Expect(ok).To(BeFalse(), subject)
	}
}
