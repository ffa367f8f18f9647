package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Health is a role's liveness and readiness.
//
// Liveness (/healthz) is only that the process serves: it answers 200 for as
// long as the server that carries it runs, and looks at nothing else, so that
// the kubelet never restarts a role that waits for its broker or reconnects to
// it (restarting would not bring the broker sooner).
//
// Readiness (/readyz) is that the role serves (Run sets it, and clears it when
// draining) and that every check added with AddCheck passes, such as being
// connected to the broker with the consumers set up.
type Health struct {
	serving  atomic.Bool
	draining atomic.Bool
	mu       sync.Mutex
	checks   []func() error
}

// SetReady says whether the role serves; Run sets it, and clears it to drain.
func (h *Health) SetReady(v bool) { h.serving.Store(v) }

// SetDraining fails readiness for good: the role was asked to drain (the
// preStop hook of its pod's app, see Drainer) and is about to stop.
func (h *Health) SetDraining() { h.draining.Store(true) }

// Draining reports whether SetDraining was called.
func (h *Health) Draining() bool { return h.draining.Load() }

// AddCheck adds a readiness condition: the role is not ready while check
// returns an error.
func (h *Health) AddCheck(check func() error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, check)
}

// Check is nil when the role is ready, else why it is not.
func (h *Health) Check() error {
	if h.draining.Load() {
		return errors.New("draining: the pod is stopping")
	}
	if !h.serving.Load() {
		return errors.New("not serving (starting or draining)")
	}
	h.mu.Lock()
	checks := h.checks
	h.mu.Unlock()
	for _, c := range checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}

// Ready reports readiness.
func (h *Health) Ready() bool { return h.Check() == nil }

// AdminRoutes adds the admin endpoints to mux.
func AdminRoutes(mux *http.ServeMux, tel *telemetry.Telemetry, health *Health) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(tel.Registry, promhttp.HandlerOpts{Registry: tel.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := health.Check(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /debug/breakers", tel.Breakers)
}

// Listen opens a TCP listener with an error that says which address failed.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			return nil, fmt.Errorf("listen on %s: %w", addr, op.Err)
		}
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return l, nil
}

// Server is one listener and what it serves.
type Server struct {
	Name     string
	Listener net.Listener
	Handler  http.Handler
	// CloseOnDrain closes the listener at the end of a drain (see Drainer),
	// before the app stops: callers that still hold this pod's address then
	// get a refused connection, which they retry elsewhere, instead of a
	// request that reaches an app that is gone.
	CloseOnDrain bool
}

// ReadTimeout bounds how long a request may take to arrive, headers and body
// (net/http's Server.ReadTimeout), so that a caller that trickles its body
// (slow loris) cannot hold a handler, or a bulkhead permit, for ever. It is
// generous because a legitimate body may be large: the biggest body a role
// accepts (8 MiB) still arrives within it at about 1.1 Mbit/s. It bounds only
// the reading: once the body is read, net/http clears the deadline, so a
// handler may still take as long as the run's timeout to answer.
const ReadTimeout = time.Minute

// MaxConnAge is how long a client may keep one connection: the first answer
// on an older connection closes it (Connection: close), and the client dials
// again. A Service balances connections, not requests, and a connection
// outlives the endpoints it was balanced over: a client with keep-alive stays
// on the pod it first reached, one that a style switch retired or a scale-up
// did not bring it to. The age bounds that to a few seconds, and a connection
// that the client reuses after a pod has retired is closed by an answer,
// which the client expects, rather than by the pod's shutdown, which a
// client that just sent a request on it sees as EOF.
const MaxConnAge = 10 * time.Second

// connStart is the context key of the time a connection was accepted.
type connStart struct{}

// closeAged asks the client to close a connection older than maxAge.
func closeAged(h http.Handler, maxAge time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, ok := r.Context().Value(connStart{}).(time.Time); ok && time.Since(t) >= maxAge {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// Options tune the servers and the drain.
type Options struct {
	// MaxConnAge overrides the package's MaxConnAge when positive.
	MaxConnAge time.Duration
	// ReadTimeout overrides the package's ReadTimeout when positive.
	ReadTimeout time.Duration
	// ShutdownDelay keeps serving after readiness turns false, so that endpoints
	// stop routing here before the listeners close.
	ShutdownDelay time.Duration
	// DrainTimeout bounds how long in-flight requests may finish.
	DrainTimeout time.Duration
	// Fatal, when it yields an error, ends Run as a failed server does:
	// readiness fails, the servers drain at once and Run returns the error,
	// so that the process exits non-zero and is restarted.
	Fatal <-chan error
	// Drainer, when set, is the role's GET /drain: when it ends, the servers
	// marked CloseOnDrain close.
	Drainer *Drainer
}

// Run serves until ctx is done, a server fails or opts.Fatal yields, then drains: readiness fails,
// after ShutdownDelay the listeners close, and in-flight requests have
// DrainTimeout to finish.
func Run(ctx context.Context, log *slog.Logger, health *Health, opts Options, servers ...Server) error {
	hs := make([]*http.Server, len(servers))
	errc := make(chan error, len(servers))
	readTimeout := ReadTimeout
	if opts.ReadTimeout > 0 {
		readTimeout = opts.ReadTimeout
	}
	maxConnAge := MaxConnAge
	if opts.MaxConnAge > 0 {
		maxConnAge = opts.MaxConnAge
	}
	for i, s := range servers {
		hs[i] = &http.Server{
			Handler: closeAged(s.Handler, maxConnAge),
			ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
				return context.WithValue(ctx, connStart{}, time.Now())
			},
			ReadHeaderTimeout: min(10*time.Second, readTimeout),
			ReadTimeout:       readTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		log.Info("Serving", "server", s.Name, "addr", s.Listener.Addr().String())
	}
	if d := opts.Drainer; d != nil {
		d.onDrained = func(ctx context.Context) {
			for i, s := range servers {
				if s.CloseOnDrain {
					if err := hs[i].Shutdown(ctx); err != nil {
						log.Warn("Closing after the drain cut short", "server", s.Name, "err", err)
					}
				}
			}
		}
	}
	for i, s := range servers {
		go func() {
			if err := hs[i].Serve(s.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.Name, err)
			}
		}()
	}
	health.SetReady(true)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	case runErr = <-opts.Fatal:
	}
	health.SetReady(false)
	if runErr != nil {
		log.Error("Stopping", "err", runErr)
	}
	log.Info("Draining", "shutdownDelay", opts.ShutdownDelay, "drainTimeout", opts.DrainTimeout)
	// After a drain (the preStop hook) the endpoints have long stopped
	// routing here: no second delay.
	if opts.ShutdownDelay > 0 && runErr == nil && !health.Draining() {
		time.Sleep(opts.ShutdownDelay)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), opts.DrainTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Go(func() {
			if err := h.Shutdown(drainCtx); err != nil {
				log.Warn("Drain cut short", "err", err)
				_ = h.Close()
			}
		})
	}
	wg.Wait()
	log.Info("Stopped")
	return runErr
}
