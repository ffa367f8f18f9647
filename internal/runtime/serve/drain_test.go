package serve

import (
	"log/slog"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestDrainedRoleExpiresWhenItsPodLivesOn(t *testing.T) {
	g := NewWithT(t)
	d := &Drainer{Log: slog.New(slog.DiscardHandler), Health: &Health{}, DrainTimeout: time.Second, RestartAfter: 50 * time.Millisecond}
	g.Consistently(d.Expired()).WithTimeout(100*time.Millisecond).ShouldNot(Receive(), "expired before any drain")
	g.Expect(d.Drain()).To(Succeed())
	var err error
	g.Eventually(d.Expired()).WithTimeout(5 * time.Second).Should(Receive(&err))
	g.Expect(err).To(MatchError(ContainSubstring("restarting to take work again")))
}
