package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/patchbay-dev/patchbay/internal/runtime/hop"
)

// The hop benchmark runs every server as its own process, the app and the
// bare ReverseProxy as this binary re-executed with one of these roles, so
// that no server shares a Go runtime with fortio or with another server.
const (
	roleEcho         = "serve-echo"
	roleReverseProxy = "serve-reverseproxy"
)

// serveRole runs a server role until SIGINT or SIGTERM.
func serveRole(role string, args []string) error {
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on")
	target := fs.String("target", "", "the app's URL (serve-reverseproxy)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var h http.Handler
	switch role {
	case roleEcho:
		h = http.HandlerFunc(echo)
	case roleReverseProxy:
		u, err := url.Parse(*target)
		if err != nil || *target == "" {
			return fmt.Errorf("--target %q: want the app's URL", *target)
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		// The sidecar's own transport, so that both proxies pool connections alike.
		rp.Transport = hop.NewTransport()
		h = rp
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: h}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// echo answers a request with its body, as a step that transforms nothing.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
