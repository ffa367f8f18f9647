package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// natsAdmin holds the manager's connections to its Brokers, one per Broker,
// opened on first use with an admin user of the Broker's workflows account
// and a user of its system account, both minted from the Broker's auth
// Secret, and opened anew with new users before theirs expire.
// A Broker that does not answer is an error for the caller to retry later: no
// call waits longer than natsAdminTimeout.
type natsAdmin struct {
	// url is where the manager reaches a Broker: its status.url, or a test's server.
	url   func(*v1alpha1.Broker) string
	mu    sync.Mutex
	conns map[types.NamespacedName]*brokerConn
}

// errNoURL says that a Broker has no address yet: its controller has not
// written its status.
var errNoURL = errors.New("no URL yet")

// natsAdminTimeout bounds a connect and each request to a Broker.
const natsAdminTimeout = 5 * time.Second

type brokerConn struct {
	// account is the workflows account the connection was made for; a
	// Broker whose auth Secret was regenerated gets a new connection.
	account string
	// renewAt is when the connection is made anew, with new users, before
	// theirs expire (natsauth.UserLifetime).
	renewAt time.Time
	auth    *natsauth.Broker
	nc, sys *nats.Conn
	js      jetstream.JetStream
	// revoking serialises the read-modify-write of the account's JWT.
	revoking sync.Mutex
}

// newNATSAdmin reaches each Broker at url(b), or its status.url if url is nil.
func newNATSAdmin(url func(*v1alpha1.Broker) string) *natsAdmin {
	if url == nil {
		url = func(b *v1alpha1.Broker) string { return b.Status.URL }
	}
	return &natsAdmin{url: url, conns: map[types.NamespacedName]*brokerConn{}}
}

// conn returns the connection to b, connecting if needed.
func (a *natsAdmin) conn(b *v1alpha1.Broker, auth *natsauth.Broker) (*brokerConn, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[client.ObjectKeyFromObject(b)]; c != nil {
		if c.account == auth.Account() && !c.nc.IsClosed() && !c.sys.IsClosed() && time.Now().Before(c.renewAt) {
			return c, nil
		}
		c.close()
		delete(a.conns, client.ObjectKeyFromObject(b))
	}
	url := a.url(b)
	if url == "" {
		return nil, fmt.Errorf("Broker %s has %w", b.Name, errNoURL)
	}
	dial := func(system bool) (*nats.Conn, error) {
		u, err := auth.NewUser("patchbay-manager", nil, system)
		if err != nil {
			return nil, err
		}
		token, seed, err := natsauth.JWTAndSeed(u.Creds)
		if err != nil {
			return nil, err
		}
		return nats.Connect(url,
			nats.Name("patchbay manager"),
			nats.Timeout(natsAdminTimeout),
			nats.MaxReconnects(-1),
			nats.UserJWTAndSeed(token, seed),
		)
	}
	nc, err := dial(false)
	if err != nil {
		return nil, fmt.Errorf("connect to Broker %s at %s: %w", b.Name, url, err)
	}
	sys, err := dial(true)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect to Broker %s at %s as its system account: %w", b.Name, url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		sys.Close()
		return nil, err
	}
	c := &brokerConn{account: auth.Account(), renewAt: time.Now().Add(natsauth.UserLifetime - natsauth.UserRenewBefore), auth: auth, nc: nc, sys: sys, js: js}
	a.conns[client.ObjectKeyFromObject(b)] = c
	return c, nil
}

// forget closes the connection to a Broker that is gone.
func (a *natsAdmin) forget(key types.NamespacedName) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.conns[key]; c != nil {
		c.close()
		delete(a.conns, key)
	}
}

func (c *brokerConn) close() {
	c.nc.Close()
	c.sys.Close()
}

// ensureResources creates or updates a workflow's stream and KV buckets on
// the Broker with the settings of its plan p and of the Broker (st).
func (c *brokerConn) ensureResources(ctx context.Context, p *plan.Plan, st *render.Streams) error {
	ctx, cancel := context.WithTimeout(ctx, natsAdminTimeout)
	defer cancel()
	return bus.EnsureResources(ctx, c.js, p, storageOf(st))
}

// storageOf is how the runtime's bus names a Broker's storage.
func storageOf(st *render.Streams) bus.Storage {
	out := bus.Storage{Replicas: int(st.Replicas), Type: jetstream.FileStorage}
	if st.Storage == v1alpha1.StorageMemory {
		out.Type = jetstream.MemoryStorage
	}
	return out
}

// deleteResources deletes what a workflow holds on the Broker: its stream
// (and with it every consumer) and its dead-letter stream unless keepStream,
// and its KV buckets unless keepBuckets. What does not exist is not an error.
func (c *brokerConn) deleteResources(ctx context.Context, r topology.BrokerResources, keepStream, keepBuckets bool) error {
	ctx, cancel := context.WithTimeout(ctx, natsAdminTimeout)
	defer cancel()
	var errs []error
	if !keepStream {
		for _, s := range []string{r.Stream, r.DeadLetters} {
			if err := c.js.DeleteStream(ctx, s); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				errs = append(errs, fmt.Errorf("delete stream %s: %w", s, err))
			}
		}
	}
	if !keepBuckets {
		for _, b := range r.Buckets {
			if err := c.js.DeleteKeyValue(ctx, b); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				errs = append(errs, fmt.Errorf("delete bucket %s: %w", b, err))
			}
		}
	}
	return errors.Join(errs...)
}

// revoke withdraws users of the workflows account: it reads the account's
// JWT from the servers, adds the revocations and pushes it back over the
// system account. A revoked user is disconnected and cannot connect again.
func (c *brokerConn) revoke(ctx context.Context, users ...string) error {
	if len(users) == 0 {
		return nil
	}
	c.revoking.Lock()
	defer c.revoking.Unlock()
	ctx, cancel := context.WithTimeout(ctx, natsAdminTimeout)
	defer cancel()
	msg, err := c.sys.RequestWithContext(ctx, fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", c.account), nil)
	if err != nil {
		return fmt.Errorf("look up the workflows account: %w", err)
	}
	current := string(msg.Data)
	if current == "" {
		current = c.auth.AccountJWT
	}
	updated, err := c.auth.Revoke(current, time.Now(), users...)
	if err != nil {
		return err
	}
	msg, err = c.sys.RequestWithContext(ctx, "$SYS.REQ.CLAIMS.UPDATE", []byte(updated))
	if err != nil {
		return fmt.Errorf("push the workflows account: %w", err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push the workflows account: unexpected answer %q", msg.Data)
	}
	if resp.Error != nil {
		return fmt.Errorf("push the workflows account: %s (%d)", resp.Error.Description, resp.Error.Code)
	}
	return nil
}
