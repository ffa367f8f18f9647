package controllers

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// The pattern guidance behind StyleAdvised (docs/api.md, Conditions):
// read-heavy flows suit the sync styles; write-heavy flows an async style with
// a sync wrapper; both heavy at scale an async style with a read model.
const (
	// heavyRatio: one kind of traffic outweighs the other at this many times its rate.
	heavyRatio = 2
	// heavyAtScale: reads and writes both at or above this rate per second are heavy at scale.
	heavyAtScale = 1000
)

// adviseStyle compares the chosen style with the guidance for the expected traffic.
func adviseStyle(style v1alpha1.Style, t *v1alpha1.Traffic, hasReadModel bool) (metav1.ConditionStatus, string, string) {
	if t == nil || (t.ReadsPerSecond == 0 && t.WritesPerSecond == 0) {
		return metav1.ConditionUnknown, v1alpha1.ReasonNoTraffic,
			"spec.traffic is not given: set readsPerSecond and writesPerSecond to get advice on the style"
	}
	r, w := t.ReadsPerSecond, t.WritesPerSecond
	load := fmt.Sprintf("%d reads/s and %d writes/s", r, w)
	fits := func(why string) (metav1.ConditionStatus, string, string) {
		return metav1.ConditionTrue, v1alpha1.ReasonStyleFits, fmt.Sprintf("%s fits %s: %s", style, load, why)
	}
	mismatch := func(advice string) (metav1.ConditionStatus, string, string) {
		return metav1.ConditionFalse, v1alpha1.ReasonStyleMismatch, fmt.Sprintf("%s does not fit %s: %s", style, load, advice)
	}
	switch {
	case r >= heavyAtScale && w >= heavyAtScale:
		if style.HasEvents() && hasReadModel {
			return fits("writes flow over the bus and reads are served from the read model")
		}
		return mismatch("both are heavy, so use hybrid or choreography with spec.readModel: writes flow over the bus and reads are served from the read model")
	case w >= heavyRatio*r:
		if style.IsAsync() {
			return fits("the bus absorbs write bursts")
		}
		return mismatch("writes dominate, so use an async style with a sync wrapper (async-orchestrated or hybrid), whose bus absorbs write bursts")
	case r >= heavyRatio*w:
		if !style.IsAsync() {
			return fits("reads are answered without a trip over the bus")
		}
		if hasReadModel {
			return fits("reads are served from the read model")
		}
		return mismatch("reads dominate, so use a sync style (sync-chain or sync-orchestrated) that answers them without a trip over the bus, or add spec.readModel")
	default:
		return fits("neither reads nor writes dominate")
	}
}
