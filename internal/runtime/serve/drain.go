package serve

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DrainPath is the admin endpoint that drains a sidecar: the app container's
// preStop hook calls it, so that the sidecar is drained before the app gets
// SIGTERM (Kubernetes stops a pod's main containers before its native
// sidecars, so a sidecar that waited for its own SIGTERM would keep feeding
// an app that is gone).
const DrainPath = "/drain"

// Drainer drains a role while its pod's app is still up. The first GET
// /drain (or Drain call):
//
//  1. fails /readyz at once and for good, so that the endpoints stop routing
//     to the pod;
//
//  2. runs Stop, which stops taking work other than inbound HTTP (the
//     sidecar's JetStream consumers stop fetching) and waits for the work in
//     hand to finish;
//
//  3. keeps serving inbound HTTP for ShutdownDelay, so that requests that
//     were already routed here still reach the live app, then waits for the
//     inbound requests in flight to finish;
//
//  4. closes the servers that Run marks CloseOnDrain (the inbound one), so
//     that a caller still routed here is refused, and retries elsewhere,
//     rather than reaching an app that is about to stop;
//
// all of it bounded by ShutdownDelay + DrainTimeout, and answers 200 once
// done (500 if the bound cut it short). Later calls wait for the same drain.
// From the start of the drain the answers of tracked handlers close their
// connections, so that callers dial again.
type Drainer struct {
	Log    *slog.Logger
	Health *Health
	// ShutdownDelay and DrainTimeout are the role's serve.Options.
	ShutdownDelay, DrainTimeout time.Duration
	// Stop, when set, stops fetching work and waits for the work in hand;
	// ctx ends when the drain's bound passes.
	Stop func(ctx context.Context) error
	// RestartAfter, when positive, makes Expired yield once a drain is this
	// old. The preStop hook also runs when the kubelet restarts only the app
	// (a failed liveness probe): the pod then lives on with a drained sidecar
	// that takes no work. Past the pod's grace period the pod is not being
	// stopped, so the sidecar exits and the kubelet starts it afresh.
	RestartAfter time.Duration

	// onDrained is Run's: close the servers marked CloseOnDrain.
	onDrained func(context.Context)

	inflight atomic.Int64
	once     sync.Once
	done     chan struct{}
	expired  chan error
	err      error
	init     sync.Once
}

func (d *Drainer) doneCh() chan struct{} {
	d.init.Do(func() {
		d.done = make(chan struct{})
		d.expired = make(chan error, 1)
	})
	return d.done
}

// Expired yields when a drain is RestartAfter old and the process still runs.
func (d *Drainer) Expired() <-chan error {
	d.doneCh()
	return d.expired
}

// Track counts the requests h serves as in flight for the drain. From the
// start of a drain their answers close the connection (Connection: close), so
// that callers dial again, through Services that no longer list this pod,
// rather than keep a connection to it.
func (d *Drainer) Track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.inflight.Add(1)
		defer d.inflight.Add(-1)
		if d.Health.Draining() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// Drain drains the role once and returns how the drain went; concurrent and
// later calls wait for the first one.
func (d *Drainer) Drain() error {
	done := d.doneCh()
	d.once.Do(func() {
		defer close(done)
		d.err = d.drain()
		if d.RestartAfter > 0 {
			time.AfterFunc(d.RestartAfter, func() {
				d.expired <- fmt.Errorf("drained %s ago, yet the pod was not stopped (its app was restarted alone): restarting to take work again", d.RestartAfter)
			})
		}
	})
	<-done
	return d.err
}

// Drained reports whether a drain finished.
func (d *Drainer) Drained() bool {
	select {
	case <-d.doneCh():
		return true
	default:
		return false
	}
}

func (d *Drainer) drain() error {
	start := time.Now()
	d.Health.SetDraining()
	d.Log.Info("Draining before the app stops", "shutdownDelay", d.ShutdownDelay, "drainTimeout", d.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), d.ShutdownDelay+d.DrainTimeout)
	defer cancel()
	stopped := make(chan error, 1)
	go func() {
		if d.Stop == nil {
			stopped <- nil
			return
		}
		stopped <- d.Stop(ctx)
	}()

	// Requests routed before the endpoints noticed still come in.
	select {
	case <-time.After(d.ShutdownDelay):
	case <-ctx.Done():
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for d.inflight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	var err error
	select {
	case err = <-stopped:
	case <-ctx.Done():
	}
	// Nothing is in flight: close the inbound listener before the app stops,
	// so that a caller still routed here is refused and retries elsewhere.
	if d.onDrained != nil {
		d.onDrained(ctx)
	}
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("drain cut short after %s: %d inbound requests still in flight", time.Since(start).Round(time.Millisecond), d.inflight.Load())
	}
	if err != nil {
		d.Log.Warn("Drain cut short", "err", err)
		return err
	}
	d.Log.Info("Drained", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// ServeHTTP is GET /drain.
func (d *Drainer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	if err := d.Drain(); err != nil {
		http.Error(w, "drain: "+err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("drained\n"))
}
