package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Options say how a role reaches the broker.
type Options struct {
	// URL is the broker's client URL, such as nats://default-nats.shop.svc:4222.
	URL string
	// Credentials is a directory with the workflow's credentials (its NATS
	// credentials Secret as mounted): the file nats.creds, a user JWT and its
	// seed, or the files user and password. Empty connects without credentials.
	Credentials string
	// InboxPrefix is the prefix of the connection's reply subjects
	// (InboxPrefix of the plan); empty keeps the client's _INBOX.
	InboxPrefix string
	// Name is the connection name the broker shows.
	Name string
	// Storage is how the workflow's stream and buckets are kept on this
	// broker, for EnsureResources where the runtime creates them (dev).
	Storage Storage
}

// Conn is a role's connection to the broker and its JetStream context.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Storage is Options.Storage.
	Storage Storage

	url      string
	closing  atomic.Bool
	failOnce sync.Once
	failed   chan struct{}
	failErr  error
	// streams caches the handles of the streams payloads are read from.
	streams sync.Map // name -> jetstream.Stream
}

func (c *Conn) stream(ctx context.Context, p *plan.Plan) (jetstream.Stream, error) {
	if s, ok := c.streams.Load(p.Stream.Name); ok {
		return s.(jetstream.Stream), nil
	}
	s, err := c.JS.Stream(ctx, p.Stream.Name)
	if err != nil {
		return nil, err
	}
	c.streams.Store(p.Stream.Name, s)
	return s, nil
}

// Connect dials the broker. It never waits for the broker: the first connect
// is retried in the background like every reconnect, for ever, and neither a
// refused connection, an unknown host nor a rejected password closes the
// connection, so a role may start long before its broker and outlive any
// broker restart. Ready says whether it is connected; Failed reports the one
// state it cannot leave, a connection closed other than by Close.
func Connect(o Options, log *slog.Logger) (*Conn, error) {
	if o.URL == "" {
		return nil, errors.New("--nats-url is required for the async styles")
	}
	c := &Conn{Storage: o.Storage, url: o.URL, failed: make(chan struct{})}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		// Credentials may be replaced (a deleted Secret, a recreated Broker)
		// while the pod still holds the old ones until it is rolled: keep
		// trying instead of closing after the same authorization error twice.
		nats.IgnoreAuthErrorAbort(),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("Disconnected from the broker", "err", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Debug("Connecting to the broker failed; retrying", "url", o.URL, "err", err)
		}),
		// Refused credentials and permission violations arrive here, not as
		// the error of a call: log them rather than nats.go's plain stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Warn("The broker reported an error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("The broker reported an error", "err", err)
		}),
		nats.ConnectHandler(func(nc *nats.Conn) { log.Info("Connected to the broker", "url", nc.ConnectedUrlRedacted()) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("Reconnected to the broker", "url", nc.ConnectedUrlRedacted()) }),
		nats.ClosedHandler(func(nc *nats.Conn) {
			err := nc.LastError()
			if err == nil {
				err = nats.ErrConnectionClosed
			}
			c.Fail(fmt.Errorf("the connection to the broker at %s closed: %w", o.URL, err))
		}),
	}
	if o.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(o.InboxPrefix))
	}
	if o.Credentials != "" {
		opt, err := credentialsOption(o.Credentials)
		if err != nil {
			return nil, err
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to the broker at %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		c.closing.Store(true)
		nc.Close()
		return nil, fmt.Errorf("JetStream at %s: %w", o.URL, err)
	}
	c.NC, c.JS = nc, js
	return c, nil
}

// Pause between two passes over the broker's servers while none answers.
const (
	minReconnectWait = 250 * time.Millisecond
	maxReconnectWait = 5 * time.Second
)

// reconnectDelay backs off from minReconnectWait to maxReconnectWait over the
// failed passes of one outage (attempts counts from 1; the client starts over
// at every disconnect), with up to 20% jitter so that a workflow's pods do not
// reconnect in step.
func reconnectDelay(attempts int) time.Duration {
	d := maxReconnectWait
	if attempts < 16 {
		d = min(minReconnectWait<<max(attempts-1, 0), maxReconnectWait)
	}
	return d + rand.N(d/5+1)
}

// Ready is nil while the connection is up, else why it is not.
func (c *Conn) Ready() error {
	if c.NC.IsConnected() {
		return nil
	}
	if err := c.NC.LastError(); err != nil {
		return fmt.Errorf("not connected to the broker at %s (%s): %w", c.url, c.NC.Status(), err)
	}
	return fmt.Errorf("not connected to the broker at %s (%s)", c.url, c.NC.Status())
}

// Fail marks the connection as unusable for good, such as when it closed or a
// consumer stopped on its own; the role should exit so that it is restarted.
// The first error wins; Fail after Close does nothing.
func (c *Conn) Fail(err error) {
	if c.closing.Load() {
		return
	}
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failed)
	})
}

// Failed is closed once Fail was called; Err says why.
func (c *Conn) Failed() <-chan struct{} { return c.failed }

// Err is the error Fail was given, or nil.
func (c *Conn) Err() error {
	select {
	case <-c.failed:
		return c.failErr
	default:
		return nil
	}
}

// Close drains the connection: pending publishes are flushed first.
func (c *Conn) Close() {
	c.closing.Store(true)
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
}

// Consume is cons.Consume, watched: the connection fails if the consumption
// stops while stopping reports false. The client stops consuming for good
// when it learns that its consumer was deleted, or the connection closed, and
// only a restart of the role recreates them. It learns of a deletion from the
// server's answer to a pending pull; a deletion between pulls answers later
// pulls with no responders and no heartbeats only, so on those errors Consume
// asks the server whether the consumer still exists, and stops if it does
// not. log gets the consumer's other errors at debug level.
func (c *Conn) Consume(cons jetstream.Consumer, handle jetstream.MessageHandler, stopping *atomic.Bool, log *slog.Logger, opts ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	durable := cons.CachedInfo().Name
	var checking atomic.Bool
	onErr := jetstream.ConsumeErrHandler(func(cc jetstream.ConsumeContext, err error) {
		log.Debug("Consumer error", "consumer", durable, "err", err)
		if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, nats.ErrNoResponders) {
			return
		}
		if !checking.CompareAndSwap(false, true) {
			return
		}
		go func() {
			defer checking.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := cons.Info(ctx); errors.Is(err, jetstream.ErrConsumerNotFound) {
				cc.Stop()
			}
		}()
	})
	cc, err := cons.Consume(handle, append(opts, onErr)...)
	if err != nil {
		return nil, err
	}
	go func() {
		<-cc.Closed()
		if !stopping.Load() {
			c.Fail(fmt.Errorf("consumer %s stopped consuming", durable))
		}
	}()
	return cc, nil
}

// CredentialsFile is the file in the credentials directory that holds the
// user's JWT and seed (natsauth.CredentialsKey).
const CredentialsFile = "nats.creds"

// credentialsOption authenticates with the credentials in dir: the file
// nats.creds, as a Workflow's credentials Secret holds it, read at every
// connect so that a reconnect after the Secret changed under a running pod
// uses the new credentials; or else the files user and password, for a
// broker of your own that has users with passwords.
func credentialsOption(dir string) (nats.Option, error) {
	file := filepath.Join(dir, CredentialsFile)
	_, err := os.Stat(file)
	if err == nil {
		return nats.UserCredentials(file), nil
	}
	user, uerr := readSecret(dir, "user")
	password, perr := readSecret(dir, "password")
	if uerr != nil || perr != nil {
		return nil, fmt.Errorf("NATS credentials: %w (nor files user and password)", err)
	}
	return nats.UserInfo(user, password), nil
}

func readSecret(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// untilReady retries f with a short pause while ctx allows: the broker may
// still be electing a JetStream leader when a role starts.
func untilReady(ctx context.Context, what string, f func(context.Context) error) error {
	delay := 100 * time.Millisecond
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := f(attempt)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// InboxPrefix is the prefix of the reply subjects of a workflow's roles
// (request replies, JetStream API answers, pull deliveries, the gateway's
// inbox): _INBOX_<stream>, so that its user may subscribe to its own replies
// and to no other workflow's.
func InboxPrefix(p *plan.Plan) string { return "_INBOX_" + p.Stream.Name }
