package plan

import (
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// The runtime asks a plan's style whether the workflow is async and then uses
// its stream, so Parse refuses a plan where the two disagree.
func TestParseRefusesAStyleAndStreamThatDisagree(t *testing.T) {
	g := NewWithT(t)
	_, err := Parse([]byte(`{"version":"` + Version + `","workflow":"wf","style":"choreography"}`))
	g.Expect(err).To(MatchError(ContainSubstring("plan of workflow wf is inconsistent: style choreography")))
	_, err = Parse([]byte(`{"version":"` + Version + `","workflow":"wf","style":"sync-chain","stream":{"name":"s"}}`))
	g.Expect(err).To(MatchError(ContainSubstring("style sync-chain")))
	p, err := Parse([]byte(`{"version":"` + Version + `","workflow":"wf","style":"hybrid","stream":{"name":"s"}}`))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.Style.IsAsync()).To(BeTrue())
}

func TestChildNamesAndServiceURL(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ChildName("shop", v1alpha1.StyleHybrid, "charge")).To(Equal("shop-hy-charge"))
	g.Expect(ConfigMapName("shop", v1alpha1.StyleSyncChain)).To(Equal("shop-sc-plan"))
	g.Expect(ServiceURL("demo", "shop")).To(Equal("http://shop.demo.svc"))
}
