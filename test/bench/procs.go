package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/patchbay-dev/patchbay/internal/freeport"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// process is a server this benchmark started; stop ends it.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	logs *tail
}

// startProcess starts a server and returns once ready answers true, or fails
// with the end of the server's output when it exits or does not get ready.
func startProcess(ctx context.Context, name string, ready func() bool, argv ...string) (*process, error) {
	return startProcessEnv(ctx, name, ready, nil, argv...)
}

// startProcessEnv is startProcess with env added to this process's environment.
func startProcessEnv(ctx context.Context, name string, ready func() bool, env []string, argv ...string) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = childAttrs()
	logs := &tail{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), logs: logs}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready (%w): %s", name, p.err, logs)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after 30s: %s", name, logs)
		}
	}
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after five seconds, and waits for the exit.
func (p *process) stop() {
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rssKiB is the resident set size of the process, from /proc/<pid>/status.
func (p *process) rssKiB() (int64, error) { return p.statusKiB("VmRSS:") }

// anonKiB is the part of the RSS that is not file-backed (the binary's code
// and read-only data are): the heap, stacks and the runtime's own memory.
func (p *process) anonKiB() (int64, error) { return p.statusKiB("RssAnon:") }

// statusKiB reads a field of /proc/<pid>/status given in kB.
func (p *process) statusKiB(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", field)
}

// cpuTime is the CPU time (user and system) the process has used.
func (p *process) cpuTime() (time.Duration, error) { return pidCPU(p.cmd.Process.Pid) }

// cpuOf is the CPU time the processes have used together; nil ones count zero.
func cpuOf(ps ...*process) time.Duration {
	var sum time.Duration
	for _, p := range ps {
		if p != nil {
			d, _ := p.cpuTime()
			sum += d
		}
	}
	return sum
}

// childrenCPU is the CPU time of this process's live children (envtest's
// kube-apiserver and etcd, the servers the sections started).
func childrenCPU() time.Duration {
	self := strconv.Itoa(os.Getpid())
	dirs, _ := os.ReadDir("/proc")
	var sum time.Duration
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(b), ") ")
		if f := strings.Fields(rest); ok && len(f) > 1 && f[1] == self {
			c, _ := pidCPU(pid)
			sum += c
		}
	}
	return sum
}

// pidCPU is the CPU time (user and system) process pid has used, from
// /proc/<pid>/stat, at the kernel's 10 ms tick (USER_HZ is 100 on Linux).
func pidCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, errors.New("short /proc/<pid>/stat")
	}
	// utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// sidecarEnv is the environment internal/render gives the sidecar container.
func sidecarEnv() []string {
	var env []string
	for _, e := range render.SidecarEnv() {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// freeAddr is a loopback address no one listens on at the moment.
func freeAddr() (string, error) { return freeport.Addr() }

// answers reports whether a GET of url answers 200.
func answers(url string) func() bool {
	c := &http.Client{Timeout: time.Second}
	return func() bool {
		resp, err := c.Get(url)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
}

// tail keeps the last 4 KiB a process wrote, for error messages.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - 4096; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
