// Package natsauth mints the NATS identities of a Broker and of the Workflows
// that use it (docs/architecture.md, Broker identities).
//
// A Broker runs its servers in operator mode: they trust one operator key and
// hold no user at all. Every workflow connects as its own user of the
// Broker's workflows account, whose JWT, signed by that account's key, carries
// the workflow's permissions. A server checks the signature chain and applies
// the permissions the JWT names, so a new workflow needs no change on the
// servers, and its credentials can be minted while the Broker is down. A
// user is withdrawn by revoking its key in the account's JWT, which the
// manager pushes to the servers over the system account.
package natsauth

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// Names of the accounts in every Broker.
const (
	// WorkflowsAccountName is the account every workflow's user belongs to;
	// it has JetStream.
	WorkflowsAccountName = "PATCHBAY"
	// SystemAccountName is the account the manager pushes account JWTs with.
	SystemAccountName = "SYS"
)

// Keys of a Broker's auth Secret. The seeds are secret; the JWTs are public
// and end up in nats.conf.
const (
	KeyOperatorSeed  = "operator.nk"
	KeySystemSeed    = "system.nk"
	KeyAccountSeed   = "account.nk"
	KeyOperatorJWT   = "operator.jwt"
	KeySystemJWT     = "system.jwt"
	KeyAccountJWT    = "account.jwt"
	KeyRoutePassword = "route-password"
)

// A user's JWT expires UserLifetime after it is minted, and the manager mints
// a Workflow's credentials anew once theirs expire in less than
// UserRenewBefore (which rolls its pods). So no valid JWT of the account is
// older than UserLifetime, and a revocation older than that revokes only
// expired JWTs: Revoke replaces them all with one revocation of every JWT
// issued before then (jwt.All), and the account's JWT stops growing with
// every rotation and deletion.
const (
	UserLifetime    = 90 * 24 * time.Hour
	UserRenewBefore = 30 * 24 * time.Hour
)

// CredentialsKey is the file a workflow's credentials Secret holds: the user's
// JWT and seed in the nats.go .creds format.
const CredentialsKey = bus.CredentialsFile

// Broker is the identity material of one Broker, as kept in its auth Secret.
type Broker struct {
	OperatorSeed, SystemSeed, AccountSeed []byte
	OperatorJWT, SystemJWT, AccountJWT    string
	// RoutePassword authenticates the routes between the Broker's servers.
	RoutePassword string
}

// NewBroker generates the keys of a Broker and signs its operator and account
// JWTs once: they are kept, so that nats.conf stays the same while the
// Secret exists.
func NewBroker(name, routePassword string) (*Broker, error) {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	acc, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	b := &Broker{RoutePassword: routePassword}
	if b.OperatorSeed, err = op.Seed(); err != nil {
		return nil, err
	}
	if b.SystemSeed, err = sys.Seed(); err != nil {
		return nil, err
	}
	if b.AccountSeed, err = acc.Seed(); err != nil {
		return nil, err
	}
	opPub, _ := op.PublicKey()
	sysPub, _ := sys.PublicKey()
	accPub, _ := acc.PublicKey()
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "patchbay-" + name
	oc.SystemAccount = sysPub
	if b.OperatorJWT, err = oc.Encode(op); err != nil {
		return nil, fmt.Errorf("sign the operator JWT: %w", err)
	}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = SystemAccountName
	if b.SystemJWT, err = sc.Encode(op); err != nil {
		return nil, fmt.Errorf("sign the system account JWT: %w", err)
	}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = WorkflowsAccountName
	// JetStream up to what the servers have (max_memory_store, max_file_store).
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
	if b.AccountJWT, err = ac.Encode(op); err != nil {
		return nil, fmt.Errorf("sign the workflows account JWT: %w", err)
	}
	return b, nil
}

// FromData reads a Broker's auth Secret; ok is false if anything is missing
// or does not parse, and the Secret should be generated anew.
func FromData(data map[string][]byte) (b *Broker, ok bool) {
	b = &Broker{
		OperatorSeed: data[KeyOperatorSeed], SystemSeed: data[KeySystemSeed], AccountSeed: data[KeyAccountSeed],
		OperatorJWT: string(data[KeyOperatorJWT]), SystemJWT: string(data[KeySystemJWT]), AccountJWT: string(data[KeyAccountJWT]),
		RoutePassword: string(data[KeyRoutePassword]),
	}
	if b.RoutePassword == "" {
		return nil, false
	}
	for _, seed := range [][]byte{b.OperatorSeed, b.SystemSeed, b.AccountSeed} {
		if _, err := nkeys.FromSeed(seed); err != nil {
			return nil, false
		}
	}
	if _, err := jwt.DecodeOperatorClaims(b.OperatorJWT); err != nil {
		return nil, false
	}
	for _, j := range []string{b.SystemJWT, b.AccountJWT} {
		if _, err := jwt.DecodeAccountClaims(j); err != nil {
			return nil, false
		}
	}
	return b, true
}

// Data is the content of the Broker's auth Secret.
func (b *Broker) Data() map[string][]byte {
	return map[string][]byte{
		KeyOperatorSeed: b.OperatorSeed, KeySystemSeed: b.SystemSeed, KeyAccountSeed: b.AccountSeed,
		KeyOperatorJWT: []byte(b.OperatorJWT), KeySystemJWT: []byte(b.SystemJWT), KeyAccountJWT: []byte(b.AccountJWT),
		KeyRoutePassword: []byte(b.RoutePassword),
	}
}

// SystemAccount and Account are the public keys of the system and the
// workflows account.
func (b *Broker) SystemAccount() string { return publicOf(b.SystemSeed) }

// Account is the public key of the workflows account.
func (b *Broker) Account() string { return publicOf(b.AccountSeed) }

func publicOf(seed []byte) string {
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return ""
	}
	pub, _ := kp.PublicKey()
	return pub
}

// User is a minted user: its credentials file and its public key, the one a
// revocation names.
type User struct {
	Creds     []byte
	PublicKey string
}

// NewUser mints a user of the workflows account (or, with system set, of the
// system account) named name with perms, valid for UserLifetime.
func (b *Broker) NewUser(name string, perms *jwt.Permissions, system bool) (*User, error) {
	seed := b.AccountSeed
	if system {
		seed = b.SystemSeed
	}
	issuer, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("account key: %w", err)
	}
	u, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, _ := u.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Expires = time.Now().Add(UserLifetime).Unix()
	if perms != nil {
		uc.Permissions = *perms
	}
	token, err := uc.Encode(issuer)
	if err != nil {
		return nil, fmt.Errorf("sign the user JWT of %s: %w", name, err)
	}
	useed, _ := u.Seed()
	creds, err := jwt.FormatUserConfig(token, useed)
	if err != nil {
		return nil, err
	}
	return &User{Creds: creds, PublicKey: pub}, nil
}

// UserOf reads a credentials file: the user's claims, if the workflows account
// of b issued them. An error says why the file is not a valid user of b.
func (b *Broker) UserOf(creds []byte) (*jwt.UserClaims, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, err
	}
	if _, err := jwt.ParseDecoratedNKey(creds); err != nil {
		return nil, err
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, err
	}
	if uc.Issuer != b.Account() {
		return nil, errors.New("issued by another account")
	}
	return uc, nil
}

// RenewAt is when the credentials of uc are to be minted anew; the zero time
// for a JWT that never expires (minted before JWTs had a lifetime), which is
// due at once.
func RenewAt(uc *jwt.UserClaims) time.Time {
	if uc.Expires == 0 {
		return time.Time{}
	}
	return time.Unix(uc.Expires, 0).Add(-UserRenewBefore)
}

// Revoke returns the account JWT with the users revoked at now, signed by
// the operator: current is the account JWT the servers hold. Every JWT issued
// more than UserLifetime before now is revoked at once (jwt.All), which
// takes the place of the single revocations older than that: those JWTs have
// expired, or (minted before JWTs had a lifetime) are revoked by it.
func (b *Broker) Revoke(current string, now time.Time, users ...string) (string, error) {
	ac, err := jwt.DecodeAccountClaims(current)
	if err != nil {
		return "", fmt.Errorf("decode the workflows account JWT: %w", err)
	}
	if ac.Subject != b.Account() {
		return "", errors.New("the servers' workflows account is not this Broker's")
	}
	for _, u := range users {
		ac.RevokeAt(u, now)
	}
	ac.RevokeAt(jwt.All, now.Add(-UserLifetime))
	ac.Revocations.MaybeCompact()
	op, err := nkeys.FromSeed(b.OperatorSeed)
	if err != nil {
		return "", err
	}
	return ac.Encode(op)
}

// JWTAndSeed splits a credentials file into the user's JWT and seed.
func JWTAndSeed(creds []byte) (token, seed string, err error) {
	if token, err = jwt.ParseDecoratedJWT(creds); err != nil {
		return "", "", err
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return "", "", err
	}
	s, err := kp.Seed()
	if err != nil {
		return "", "", err
	}
	return token, string(s), nil
}
