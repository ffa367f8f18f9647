package dev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/demostep"
	"github.com/patchbay-dev/patchbay/internal/freeport"
)

// appReadyTimeout bounds how long a started command may take to listen.
const appReadyTimeout = 30 * time.Second

// Source says where a step's app comes from.
type Source struct {
	// Command is run with sh -c, with PORT set to the port it must listen on.
	Command string
	// URL is an app that already runs.
	URL string
}

// ParseSteps reads --step values, NAME=cmd:COMMAND or NAME=url:URL, and checks
// that every name is a step of the workflow.
func ParseSteps(values []string, wf *v1alpha1.Workflow) (map[string]Source, error) {
	known := map[string]bool{}
	var names []string
	for _, s := range wf.Spec.Steps {
		known[s.Name] = true
		names = append(names, s.Name)
	}
	out := map[string]Source{}
	for _, v := range values {
		name, src, ok := strings.Cut(v, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--step %q: want NAME=cmd:COMMAND or NAME=url:URL", v)
		}
		if !known[name] {
			return nil, fmt.Errorf("--step %s: workflow %s has no step %s (steps: %s)", v, wf.Name, name, strings.Join(names, ", "))
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--step %s: step %s is given twice", v, name)
		}
		switch {
		case strings.HasPrefix(src, "cmd:") && strings.TrimSpace(src[4:]) != "":
			out[name] = Source{Command: src[4:]}
		case strings.HasPrefix(src, "url:"):
			u, err := url.Parse(src[4:])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("--step %s: %q is not an http(s) URL", v, src[4:])
			}
			out[name] = Source{URL: strings.TrimSuffix(src[4:], "/")}
		default:
			return nil, fmt.Errorf("--step %q: want NAME=cmd:COMMAND or NAME=url:URL", v)
		}
	}
	return out, nil
}

// app is a running step app.
type app struct {
	step string
	url  string // base URL
	// one of:
	server *http.Server
	proc   *exec.Cmd
	exited chan struct{}
}

// startApp starts a step's app: src if given, else a demo-step in this process
// configured by the step's args, as the samples are.
func startApp(ctx context.Context, st *v1alpha1.Step, src Source, stderr io.Writer, log *slog.Logger) (*app, error) {
	switch {
	case src.URL != "":
		return &app{step: st.Name, url: src.URL}, nil
	case src.Command != "":
		return startCommand(ctx, st.Name, src.Command, stderr, log)
	}
	cfg, err := demostep.Parse(st.Args, io.Discard)
	if err != nil {
		return nil, fmt.Errorf("step %s runs %s, and its args are not demo-step flags (%w): give it an app with --step %s=cmd:COMMAND or --step %s=url:URL", st.Name, st.Image, err, st.Name, st.Name)
	}
	cfg.Name = st.Name
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("step %s: %w", st.Name, err)
	}
	srv := demostep.NewServer("", cfg)
	go func() { _ = srv.Serve(l) }()
	return &app{step: st.Name, url: "http://" + l.Addr().String(), server: srv}, nil
}

// errPortTaken is a command that exited because its $PORT was in use.
var errPortTaken = errors.New("its port was taken")

// startCommand starts a step command with $PORT set to a free port. The port
// is found free and only then handed to the command, so another process may
// take it in between: if the command exits saying so, it is started once more
// on a new port.
func startCommand(ctx context.Context, step, command string, stderr io.Writer, log *slog.Logger) (*app, error) {
	a, err := startCommandOnce(ctx, step, command, stderr, log)
	if errors.Is(err, errPortTaken) {
		log.Warn("Step command found its port taken, starting it again on another", "step", step, "err", err)
		a, err = startCommandOnce(ctx, step, command, stderr, log)
	}
	return a, err
}

func startCommandOnce(ctx context.Context, step, command string, stderr io.Writer, log *slog.Logger) (*app, error) {
	// Below the ephemeral range: the wait for the command probes the port,
	// and a probe of a closed ephemeral port can connect to itself.
	port, err := freeport.Port()
	if err != nil {
		return nil, fmt.Errorf("step %s: %w", step, err)
	}
	cmd := exec.Command("sh", "-c", command)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "PATCHBAY_STEP="+step)
	inUse := &addrInUseWatch{}
	cmd.Stdout, cmd.Stderr = stderr, io.MultiWriter(stderr, inUse)
	// What the shell starts in the background may keep its stderr open after
	// it exits; do not let that hold up noticing the exit.
	cmd.WaitDelay = time.Second
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("step %s: start %q: %w", step, command, err)
	}
	a := &app{step: step, url: "http://127.0.0.1:" + strconv.Itoa(port), proc: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(a.exited) }()
	log.Info("Started step command", "step", step, "pid", cmd.Process.Pid, "port", port, "command", command)

	// Poll until the command listens, it exits, or the bound passes.
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(appReadyTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return a, nil
		}
		select {
		case <-a.exited:
			// The shell is gone; what it started in the background is not.
			kill(cmd)
			err := fmt.Errorf("step %s: command %q exited before listening on $PORT (%d): %v", step, command, port, cmd.ProcessState)
			if inUse.seen.Load() {
				err = fmt.Errorf("%w: %w", err, errPortTaken)
			}
			return nil, err
		case <-ctx.Done():
			a.stop(log)
			return nil, ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			a.stop(log)
			return nil, fmt.Errorf("step %s: command %q did not listen on $PORT (%d) within %s", step, command, port, appReadyTimeout)
		}
	}
}

// stop ends the app: a graceful shutdown, then SIGTERM to the command's process
// group, then SIGKILL if it lingers.
func (a *app) stop(log *slog.Logger) {
	switch {
	case a.server != nil:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.server.Shutdown(ctx); err != nil {
			_ = a.server.Close()
		}
	case a.proc != nil:
		select {
		case <-a.exited:
			return
		default:
		}
		terminate(a.proc)
		select {
		case <-a.exited:
		case <-time.After(5 * time.Second):
			log.Warn("Step command ignored SIGTERM, killing it", "step", a.step, "pid", a.proc.Process.Pid)
			kill(a.proc)
			<-a.exited
		}
	}
}

// addrInUseWatch notes whether a command's stderr said its address was in use,
// as Go, Node, Python and most servers put it.
type addrInUseWatch struct {
	tail []byte
	seen atomic.Bool
}

func (w *addrInUseWatch) Write(b []byte) (int, error) {
	if w.seen.Load() {
		return len(b), nil
	}
	// Keep the end of the previous write, so a message split across writes is found.
	const keep = 64
	w.tail = append(w.tail, b...)
	if bytes.Contains(bytes.ToLower(w.tail), []byte("address already in use")) {
		w.seen.Store(true)
		w.tail = nil
	} else if len(w.tail) > keep {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-keep:]...)
	}
	return len(b), nil
}
