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

// Health is a role's readiness: ready once it serves, not ready while draining.
type Health struct{ ready atomic.Bool }

// SetReady sets readiness.
func (h *Health) SetReady(v bool) { h.ready.Store(v) }

// Ready reports readiness.
func (h *Health) Ready() bool { return h.ready.Load() }

// AdminRoutes adds the admin endpoints to mux.
func AdminRoutes(mux *http.ServeMux, tel *telemetry.Telemetry, health *Health) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(tel.Registry, promhttp.HandlerOpts{Registry: tel.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !health.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
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
			return nil, fmt.Errorf("listen on %s: %v", addr, op.Err)
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
}

// Options tune the drain.
type Options struct {
	// ShutdownDelay keeps serving after readiness turns false, so that endpoints
	// stop routing here before the listeners close.
	ShutdownDelay time.Duration
	// DrainTimeout bounds how long in-flight requests may finish.
	DrainTimeout time.Duration
}

// Run serves until ctx is done or a server fails, then drains: readiness fails,
// after ShutdownDelay the listeners close, and in-flight requests have
// DrainTimeout to finish.
func Run(ctx context.Context, log *slog.Logger, health *Health, opts Options, servers ...Server) error {
	hs := make([]*http.Server, len(servers))
	errc := make(chan error, len(servers))
	for i, s := range servers {
		hs[i] = &http.Server{
			Handler:           s.Handler,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
		log.Info("Serving", "server", s.Name, "addr", s.Listener.Addr().String())
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
	}
	health.SetReady(false)
	log.Info("Draining", "shutdownDelay", opts.ShutdownDelay, "drainTimeout", opts.DrainTimeout)
	if opts.ShutdownDelay > 0 && runErr == nil {
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
