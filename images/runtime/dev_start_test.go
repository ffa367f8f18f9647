package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	. "github.com/onsi/gomega"
)

// writeWorkflow writes a Workflow YAML into the test's temporary directory.
func writeWorkflow(t *testing.T, yaml string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "workflow.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// expectOneErrorLine checks that dev failed the way a user should see it: one
// "patchbay-runtime: ..." line, last, and no panic.
func expectOneErrorLine(g Gomega, stderr string, want ...string) {
	g.Expect(stderr).NotTo(ContainSubstring("panic"), stderr)
	var errLines []string
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "patchbay-runtime: ") {
			errLines = append(errLines, l)
		}
	}
	g.Expect(errLines).To(HaveLen(1), stderr)
	g.Expect(lines[len(lines)-1]).To(Equal(errLines[0]), stderr)
	for _, w := range want {
		g.Expect(errLines[0]).To(ContainSubstring(w))
	}
}

// pidIn reads the pid a step command wrote.
func pidIn(g Gomega, file string) int {
	b, err := os.ReadFile(file)
	g.Expect(err).NotTo(HaveOccurred())
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	g.Expect(err).NotTo(HaveOccurred())
	return pid
}

// gone says whether the process has ended: it no longer exists, or it is a
// zombie no one reaped yet (an orphan whose init does not reap, in a container).
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) state ...: comm may hold spaces, so the state follows the last ')'.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] == "Z"
}

func TestDevFailsCleanlyWhenAStepCannotStart(t *testing.T) {
	t.Run("args that are not demo-step flags", func(t *testing.T) {
		g := NewWithT(t)
		file := writeWorkflow(t, `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: bad-args}
spec:
  style: sync-chain
  steps:
  - {name: first, image: example.com/first:1, args: ["--mode=echo"]}
  - {name: second, image: example.com/second:1, args: ["serve", "--port=9000"], dependsOn: [first]}
`)
		p := start(t, runtimeBin, "dev", "-f", file)
		g.Expect(p.wait(t)).To(Equal(1), p.stderr.String())
		expectOneErrorLine(g, p.stderr.String(), "step second", "not demo-step flags", "--step second=cmd:COMMAND")
		g.Expect(strings.Split(strings.TrimSpace(p.stderr.String()), "\n")).To(HaveLen(1), p.stderr.String())
	})

	t.Run("a command that exits stops the commands started before it", func(t *testing.T) {
		g := NewWithT(t)
		dir := t.TempDir()
		pidFile := func(name string) string { return filepath.Join(dir, name+".pid") }
		// exec: the pid the shell writes is the demo-step's own.
		demo := func(name string) string {
			return fmt.Sprintf("%s=cmd:echo $$ > %s; exec %s --mode=echo", name, pidFile(name), demoStepBin)
		}
		p := start(t, runtimeBin, "dev", "-f", sample("sync-chain"),
			"--step", demo("cart"), "--step", demo("pricing"),
			// A background child of the failing command must not outlive it either.
			"--step", fmt.Sprintf("tax=cmd:sleep 300 & echo $! > %s; exit 3", pidFile("tax-child")))
		t.Cleanup(func() {
			for _, name := range []string{"cart", "pricing", "tax-child"} {
				if b, err := os.ReadFile(pidFile(name)); err == nil {
					if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
		})
		g.Expect(p.wait(t)).To(Equal(1), p.stderr.String())
		expectOneErrorLine(g, p.stderr.String(), "step tax", "exited before listening", "exit status 3")
		for _, name := range []string{"cart", "pricing", "tax-child"} {
			pid := pidIn(g, pidFile(name))
			g.Eventually(func() bool { return gone(pid) }).WithTimeout(waitBound).
				WithPolling(pollEvery).Should(BeTrue(), "%s (pid %d) is still running", name, pid)
		}
	})
}

func TestDevStartsACommandAgainWhenItsPortWasTaken(t *testing.T) {
	g := NewWithT(t)
	// The first start of cart fails as a server does when another process
	// took its port between dev picking it and the server binding it.
	tried := filepath.Join(t.TempDir(), "tried")
	cart := fmt.Sprintf("cart=cmd:if [ ! -e %[1]s ]; then touch %[1]s; echo 'listen tcp :'$PORT': bind: address already in use' >&2; exit 1; fi; exec %[2]s --mode=transform --set=cart=loaded",
		tried, demoStepBin)
	p, stdout := startReadingStdout(t, runtimeBin, "dev", "-f", sample("sync-chain"), "--step", cart)
	url := readLine(t, stdout)
	code, body := post(g, url, `{}`)
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(body).To(MatchJSON(`{"cart":"loaded","priced":true,"taxed":true}`))
	g.Expect(p.terminate(t)).To(Equal(0), p.stderr.String())
	g.Expect(p.stderr.String()).To(ContainSubstring("Step command found its port taken, starting it again on another"))
}
