//go:build linux

package proctest

import (
	"io"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestKillEndsTheGroupAndRestartRunsTheSameCommand(t *testing.T) {
	g := NewWithT(t)
	// The shell starts a child in the background: Kill must end it too.
	p, err := Start("sleeper", io.Discard, "sh", "-c", "sleep 600 & wait")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(p.Kill)
	first := p.Pid()
	p.Kill()
	g.Expect(p.Exited()).To(BeClosed())
	g.Eventually(func() error { return syscall.Kill(-first, 0) }).WithTimeout(10*time.Second).WithPolling(10*time.Millisecond).
		Should(MatchError(syscall.ESRCH), "no process of the group is left")

	g.Expect(p.Restart()).To(Succeed())
	g.Expect(p.Pid()).NotTo(Equal(first))
	g.Expect(p.Exited()).NotTo(BeClosed())
	code, err := p.Terminate(10 * time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(code).To(Equal(-1), "ended by the signal")
}

func TestWaitDialableNoticesAnExit(t *testing.T) {
	g := NewWithT(t)
	p, err := Start("quitter", io.Discard, "sh", "-c", "exit 3")
	g.Expect(err).NotTo(HaveOccurred())
	addr, err := FreeAddr()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(WaitDialable(p, addr, time.Minute)).To(MatchError(ErrExited))
}
