package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/natsauth/natsauthtest"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// authFailures counts the log records of refused connects.
type authFailures struct{ n atomic.Int64 }

func (a *authFailures) Enabled(context.Context, slog.Level) bool { return true }
func (a *authFailures) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(at slog.Attr) bool {
		if at.Key == "err" && strings.Contains(strings.ToLower(fmt.Sprint(at.Value.Any())), "authorization violation") {
			a.n.Add(1)
		}
		return true
	})
	return nil
}
func (a *authFailures) WithAttrs([]slog.Attr) slog.Handler { return a }
func (a *authFailures) WithGroup(string) slog.Handler      { return a }

// A role whose user is revoked (its Secret replaced, its Broker given new
// keys) keeps trying with whatever credentials its Secret holds, however
// often the broker refuses them, and is back once the new ones arrive: nats.go
// would close the connection after the second refusal without
// nats.IgnoreAuthErrorAbort.
func TestAConnectionOutlivesRefusedCredentials(t *testing.T) {
	g := NewWithT(t)
	auth, url := natsauthtest.Start(t)

	p := &plan.Plan{Namespace: "default", Workflow: "w", Stream: &plan.Stream{
		Name: "pb_default_w", Subjects: []string{"pb.default.w.>"}, RunsBucket: "pb_default_w_runs",
	}}
	dir := t.TempDir()
	writeUser := func() *natsauth.User {
		u, err := auth.NewWorkflowUser(p)
		g.Expect(err).NotTo(HaveOccurred())
		// As the kubelet updates a mounted Secret: a new file swapped in.
		tmp := filepath.Join(dir, ".new")
		g.Expect(os.WriteFile(tmp, u.Creds, 0o600)).To(Succeed())
		g.Expect(os.Rename(tmp, filepath.Join(dir, bus.CredentialsFile))).To(Succeed())
		return u
	}
	first := writeUser()
	failures := &authFailures{}
	c, err := bus.Connect(bus.Options{URL: url, Credentials: dir, InboxPrefix: bus.InboxPrefix(p), Name: "test"}, slog.New(failures))
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	g.Eventually(c.Ready, 10*time.Second).Should(Succeed())

	// revoking the user: the broker disconnects it and refuses it from then on
	sys := natsauthtest.System(t, auth, url)
	current, err := sys.Request("$SYS.REQ.ACCOUNT."+auth.Account()+".CLAIMS.LOOKUP", nil, 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	revoked, err := auth.Revoke(string(current.Data), time.Now(), first.PublicKey)
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(revoked), 5*time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(resp.Data)).NotTo(ContainSubstring(`"error"`))

	g.Eventually(c.Ready, 10*time.Second).ShouldNot(Succeed())
	g.Eventually(failures.n.Load, 30*time.Second).Should(BeNumerically(">=", 3), "refused at least three times")
	g.Expect(c.Failed()).NotTo(BeClosed(), "the connection gave up: %v", c.Err())

	// replacing the credentials file: the next attempt uses it
	writeUser()
	g.Eventually(c.Ready, 30*time.Second).Should(Succeed())
	g.Expect(c.Failed()).NotTo(BeClosed())
}
