package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// The suite reaches this server on its pod IP from the host and asks it to act
// from inside the cluster, where our images have no shell and no curl:
//
//	POST /http  {"method","url","body","headers","timeout"} -> {"status","body","headers","error"}
//	GET  /dial?addr=HOST:PORT&timeout=2s                     -> {"error"} (empty: connected)
//	GET  /resolve?name=NAME                                   -> {"addrs","error"}
func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /http", doHTTP)
	mux.HandleFunc("GET /dial", doDial)
	mux.HandleFunc("GET /resolve", doResolve)
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background())
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err) //nolint:gocritic // exitAfterDefer: the deferred stop only unregisters the signals
	}
}

type httpRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
	Timeout string            `json:"timeout"`
}

type httpAnswer struct {
	Status  int               `json:"status"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers,omitempty"`
	Error   string            `json:"error,omitempty"`
}

func doHTTP(w http.ResponseWriter, r *http.Request) {
	var in httpRequest
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), duration(in.Timeout, 10*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, in.Method, in.URL, strings.NewReader(in.Body))
	if err != nil {
		reply(w, httpAnswer{Error: err.Error()})
		return
	}
	for k, v := range in.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		reply(w, httpAnswer{Error: err.Error()})
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	out := httpAnswer{Status: resp.StatusCode, Body: string(body), Headers: map[string]string{}}
	if err != nil {
		out.Error = err.Error()
	}
	for k := range resp.Header {
		out.Headers[k] = resp.Header.Get(k)
	}
	reply(w, out)
}

func doDial(w http.ResponseWriter, r *http.Request) {
	c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), duration(r.URL.Query().Get("timeout"), 2*time.Second))
	if err != nil {
		reply(w, map[string]string{"error": err.Error()})
		return
	}
	_ = c.Close()
	reply(w, map[string]string{})
}

func doResolve(w http.ResponseWriter, r *http.Request) {
	addrs, err := net.DefaultResolver.LookupHost(r.Context(), r.URL.Query().Get("name"))
	out := map[string]any{"addrs": addrs}
	if err != nil {
		out["error"] = err.Error()
	}
	reply(w, out)
}

func duration(s string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d
	}
	return def
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
