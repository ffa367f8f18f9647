//go:build linux

// Package proctest runs real processes for tests: each in a process group of
// its own, so that killing it kills what it started too, and restartable with
// the same command line, as Kubernetes restarts a container. It also builds
// the binaries tests run, the NATS server among them.
package proctest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/patchbay-dev/patchbay/internal/freeport"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Proc is a started process.
type Proc struct {
	Name string
	bin  string
	args []string
	out  io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs bin with args in a process group of its own; its stdout and
// stderr go to out.
func Start(name string, out io.Writer, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, bin: bin, args: args, out: out}
	if err := p.start(); err != nil {
		return p, err
	}
	return p, nil
}

func (p *Proc) start() error {
	cmd := exec.Command(p.bin, p.args...)
	// Its own group, so that Kill reaches what it started; and killed if the
	// test process dies before it could clean up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	// A child the process left behind may hold its output open: do not let
	// that block Wait.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s (%s): %w", p.Name, p.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	return nil
}

// Exited is closed when the current run of the process has ended.
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Pid is the process id of the current run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Kill sends SIGKILL to the process group and waits for the process to end.
func (p *Proc) Kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// Restart starts the process again with the same command line, after its
// current run ended (Kill it first to end it).
func (p *Proc) Restart() error {
	<-p.Exited()
	return p.start()
}

// Terminate sends SIGTERM to the process group and waits up to timeout for
// the process to exit; it returns the exit code, or an error (and kills the
// group) if it lingers.
func (p *Proc) Terminate(timeout time.Duration) (int, error) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		p.Kill()
		return -1, fmt.Errorf("%s did not exit within %s of SIGTERM", p.Name, timeout)
	}
}

// FreeAddr is a loopback address with a port that was free just now, below
// the ephemeral range so that Dialable cannot connect to itself on it.
func FreeAddr() (string, error) { return freeport.Addr() }

// Dialable reports whether something listens on addr.
func Dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// Build builds the Go package pkg (a path go build accepts, run in the module)
// into dir and returns the binary's path.
func Build(dir, pkg, name string) (string, error) {
	bin := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

const natsModule = "github.com/nats-io/nats-server/v2"

// NATSServer is the nats-server binary of the version go.mod requires, built
// once into the user cache (PATCHBAY_CACHE, default ~/.cache/patchbay) and
// reused by later runs and clones.
func NATSServer() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", natsModule).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", natsModule, err)
	}
	version := strings.TrimSpace(string(out))
	cache := os.Getenv("PATCHBAY_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(base, "patchbay")
	}
	dir := filepath.Join(cache, "tools", "nats-server-"+version)
	bin := filepath.Join(dir, "nats-server")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build beside it and rename, so that a concurrent build or an
	// interrupted one never leaves half a binary under the final name.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	built, err := Build(tmp, natsModule, "nats-server")
	if err != nil {
		return "", err
	}
	return bin, os.Rename(built, bin)
}

// NATS is a nats-server process with JetStream on a file store. Restarting
// it keeps its port and its store, as a Broker pod keeps its volume.
type NATS struct {
	*Proc
	Addr string
}

// StartNATS runs bin as a JetStream server on a free loopback port, storing
// into storeDir, with the max_payload of a Broker's servers.
func StartNATS(bin, storeDir string, out io.Writer) (*NATS, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(storeDir, "nats.conf")
	cfg := fmt.Sprintf("server_name: faults\nhost: %s\nport: %s\nmax_payload: %d\njetstream {\n  store_dir: %s\n}\n",
		host, port, plan.MaxMessageLen, strconv.Quote(filepath.Join(storeDir, "js")))
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	p, err := Start("nats-server", out, bin, "--config", conf)
	if err != nil {
		return nil, err
	}
	return &NATS{Proc: p, Addr: addr}, nil
}

// URL is the server's client URL.
func (n *NATS) URL() string { return "nats://" + n.Addr }

// ErrExited is returned by WaitDialable when the process ended first.
var ErrExited = errors.New("the process exited")

// WaitDialable polls until p listens on addr, p exits, or timeout passes.
func WaitDialable(p *Proc, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if Dialable(addr) {
			return nil
		}
		select {
		case <-p.Exited():
			return fmt.Errorf("%s on %s: %w", p.Name, addr, ErrExited)
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %s", p.Name, addr, timeout)
		}
	}
}
