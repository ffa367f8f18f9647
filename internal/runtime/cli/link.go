package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Backoff between two attempts to set a role up on the broker.
const (
	minSetupBackoff = 500 * time.Millisecond
	maxSetupBackoff = 30 * time.Second
)

// setupFunc sets a role up on the broker (stream, buckets, consumers) and
// returns how to stop what it started.
type setupFunc func(ctx context.Context, conn *bus.Conn) (stop func(), err error)

// brokerLink is a role's life on the broker. A role serves /healthz and
// /readyz from its start and never waits for the broker before listening: the
// link connects in the background (the client retries for ever) and runs the
// role's setup until it succeeds, backing off between attempts, for as long as
// the role runs. Until then, and whenever the connection is down, /readyz
// says why the role is not ready; /healthz stays 200. A connection that closes
// for good, or a consumer that stops on its own, is fatal: Fatal yields the
// error, so that the role drains and exits non-zero and Kubernetes restarts it.
type brokerLink struct {
	conn   *bus.Conn
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when the setup loop returned
	fatal  chan error

	mu       sync.Mutex
	up       bool
	setupErr error
	stop     func()

	closeOnce sync.Once
}

// link connects to the broker and starts setting the role up in the
// background; only a configuration error (no URL, unreadable credentials)
// fails it. The role's readiness then includes the link's.
func (n *natsFlags) link(ctx context.Context, p *plan.Plan, tel *telemetry.Telemetry, name string, health *serve.Health, setup setupFunc) (*brokerLink, error) {
	conn, err := n.connect(p, tel, name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &brokerLink{conn: conn, log: tel.Log, cancel: cancel, done: make(chan struct{}), fatal: make(chan error, 1)}
	health.AddCheck(l.ready)
	go func() {
		select {
		case <-conn.Failed():
			l.fatal <- conn.Err()
		case <-ctx.Done():
		}
	}()
	go l.setUp(ctx, setup)
	return l, nil
}

func (l *brokerLink) setUp(ctx context.Context, setup setupFunc) {
	defer close(l.done)
	delay := minSetupBackoff
	for attempt := 1; ; attempt++ {
		stop, err := setup(ctx, l.conn)
		if err == nil {
			l.mu.Lock()
			l.up, l.setupErr, l.stop = true, nil, stop
			l.mu.Unlock()
			l.log.Info("Set up on the broker", "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		l.mu.Lock()
		l.setupErr = err
		l.mu.Unlock()
		l.log.Warn("Setting up on the broker failed; retrying", "attempt", attempt, "in", delay, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, maxSetupBackoff)
	}
}

// ready is the link's readiness: connected, and set up on the broker.
func (l *brokerLink) ready() error {
	if err := l.conn.Err(); err != nil {
		return err
	}
	if err := l.conn.Ready(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.up:
		return nil
	case l.setupErr != nil:
		return fmt.Errorf("setting up on the broker: %w", l.setupErr)
	default:
		return errors.New("setting up on the broker")
	}
}

// Fatal yields the error that ends the role, if any.
func (l *brokerLink) Fatal() <-chan error { return l.fatal }

// Drain ends the setup loop and stops what the setup started (the consumers
// stop fetching and finish the messages in hand) but keeps the connection up,
// for the acks and results of those messages. ctx bounds the wait; Close
// still follows.
func (l *brokerLink) Drain(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.stopSetup()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("messages still in hand: %w", ctx.Err())
	}
}

// Close ends the setup loop, stops what the setup started and drains the
// connection. It may be called more than once and from several goroutines:
// every call returns once the first is done.
func (l *brokerLink) Close() {
	l.closeOnce.Do(func() {
		l.stopSetup()
		l.conn.Close()
	})
}

// stopSetup ends the setup loop and stops what the setup started.
func (l *brokerLink) stopSetup() {
	l.cancel()
	<-l.done
	l.mu.Lock()
	stop := l.stop
	l.mu.Unlock()
	if stop != nil {
		stop()
	}
}
