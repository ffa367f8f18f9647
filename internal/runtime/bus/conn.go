package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options say how a role reaches the broker.
type Options struct {
	// URL is the broker's client URL, such as nats://default-nats.shop.svc:4222.
	URL string
	// Credentials is a directory with the files user and password (the Broker's
	// client Secret as mounted); empty connects without credentials.
	Credentials string
	// Name is the connection name the broker shows.
	Name string
	// Storage is how the workflow's stream and buckets are kept on this broker.
	Storage Storage
}

// Conn is a role's connection to the broker and its JetStream context.
type Conn struct {
	NC *nats.Conn
	JS jetstream.JetStream
	// Storage is how the workflow's stream and buckets are kept on this broker.
	Storage Storage
}

// Connect dials the broker. It keeps reconnecting for ever once connected, and
// retries the first connect too, so a role may start before its broker is up.
func Connect(o Options, log *slog.Logger) (*Conn, error) {
	if o.URL == "" {
		return nil, errors.New("--nats-url is required for the async styles")
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("Disconnected from the broker", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("Reconnected to the broker", "url", nc.ConnectedUrlRedacted()) }),
	}
	if o.Credentials != "" {
		user, err := readSecret(o.Credentials, "user")
		if err != nil {
			return nil, err
		}
		password, err := readSecret(o.Credentials, "password")
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(user, password))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to the broker at %s: %w", o.URL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("JetStream at %s: %w", o.URL, err)
	}
	return &Conn{NC: nc, JS: js, Storage: o.Storage}, nil
}

// Close drains the connection: pending publishes are flushed first.
func (c *Conn) Close() {
	if err := c.NC.Drain(); err != nil {
		c.NC.Close()
	}
}

func readSecret(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
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
