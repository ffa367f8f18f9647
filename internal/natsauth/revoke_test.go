package natsauth_test

import (
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/natsauth/natsauthtest"
)

// A user's JWT expires, and is renewed well before it does.
func TestUsersExpireAndAreRenewedBefore(t *testing.T) {
	g := NewWithT(t)
	auth := natsauthtest.Keys(t)
	before := time.Now()
	u, err := auth.NewUser("u", nil, false)
	g.Expect(err).NotTo(HaveOccurred())
	uc, err := auth.UserOf(u.Creds)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(time.Unix(uc.Expires, 0)).To(BeTemporally(">=", before.Add(natsauth.UserLifetime).Truncate(time.Second)))
	g.Expect(natsauth.RenewAt(uc)).To(Equal(time.Unix(uc.Expires, 0).Add(-natsauth.UserRenewBefore)))
	g.Expect(natsauth.RenewAt(uc)).To(BeTemporally(">", time.Now()))

	uc.Expires = 0 // minted before JWTs had a lifetime
	g.Expect(natsauth.RenewAt(uc).IsZero()).To(BeTrue(), "due at once")
}

// Each revocation stays in the account's JWT only as long as a JWT it
// revokes could be valid: older ones give way to one revocation of every
// JWT issued before then, and the servers still refuse the revoked users
// and accept the others.
func TestRevocationsOlderThanAUsersLifetimeArePruned(t *testing.T) {
	g := NewWithT(t)
	auth, url := natsauthtest.Start(t)
	sys := natsauthtest.System(t, auth, url)
	// revoke reads the account's JWT from the servers, revokes users at now
	// and pushes it back, as the manager does.
	revoke := func(now time.Time, users ...string) *jwt.AccountClaims {
		t.Helper()
		current, err := sys.Request("$SYS.REQ.ACCOUNT."+auth.Account()+".CLAIMS.LOOKUP", nil, 5*time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		updated, err := auth.Revoke(string(current.Data), now, users...)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := sys.Request("$SYS.REQ.CLAIMS.UPDATE", []byte(updated), 5*time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(resp.Data)).NotTo(ContainSubstring(`"error"`))
		ac, err := jwt.DecodeAccountClaims(updated)
		g.Expect(err).NotTo(HaveOccurred())
		return ac
	}
	connect := func(u *natsauth.User) error {
		nc, err := nats.Connect(url, natsauthtest.As(t, u.Creds), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
		}
		return err
	}
	kept, err := auth.NewUser("kept", nil, false)
	g.Expect(err).NotTo(HaveOccurred())
	gone, err := auth.NewUser("gone", nil, false)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(connect(kept)).To(Succeed())
	g.Expect(connect(gone)).To(Succeed())

	now := time.Now()
	kp, err := nkeys.CreateUser()
	g.Expect(err).NotTo(HaveOccurred())
	long, _ := kp.PublicKey()
	kp, err = nkeys.CreateUser()
	g.Expect(err).NotTo(HaveOccurred())
	recent, _ := kp.PublicKey()
	// A user revoked longer ago than a JWT lives, another within that time.
	ac := revoke(now.Add(-natsauth.UserLifetime-time.Hour), long)
	g.Expect(ac.Revocations).To(HaveKey(long))
	ac = revoke(now.Add(-natsauth.UserLifetime+time.Hour), recent)
	g.Expect(ac.Revocations).To(HaveKey(long), "within its lifetime then")
	g.Expect(ac.Revocations).To(HaveKey(recent))

	// Now the first is older than any valid JWT: it is pruned.
	ac = revoke(now, gone.PublicKey)
	g.Expect(ac.Revocations).To(Equal(jwt.RevocationList{
		jwt.All:        now.Add(-natsauth.UserLifetime).Unix(),
		recent:         now.Add(-natsauth.UserLifetime + time.Hour).Unix(),
		gone.PublicKey: now.Unix(),
	}))
	// Every JWT issued before the cut is revoked, whatever it says.
	g.Expect(ac.Revocations.IsRevoked(long, now.Add(-natsauth.UserLifetime-2*time.Hour))).To(BeTrue())

	g.Eventually(func() error { return connect(gone) }, 10*time.Second).Should(MatchError(nats.ErrAuthorization))
	g.Expect(connect(kept)).To(Succeed(), "a user not revoked still connects")
}
