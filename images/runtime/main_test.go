package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// These tests run the real binaries: patchbay-runtime and demo-step, built once.
var runtimeBin, demoStepBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "patchbay-runtime-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	runtimeBin, demoStepBin = filepath.Join(dir, "patchbay-runtime"), filepath.Join(dir, "demo-step")
	for bin, pkg := range map[string]string{runtimeBin: ".", demoStepBin: "../demo-step"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitBound bounds every wait, generous for a loaded 2-core machine;
// pollEvery is how often a wait looks.
const (
	waitBound = 30 * time.Second
	pollEvery = 20 * time.Millisecond
)

// process is a started binary; the test's cleanup kills its whole process
// group if it is still running, so nothing it started outlives the test.
type process struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{}
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p, stdout := startReadingStdout(t, bin, args...)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return p
}

// startReadingStdout starts a binary and leaves its stdout to the test.
func startReadingStdout(t *testing.T, bin string, args ...string) (*process, *bufio.Reader) {
	t.Helper()
	return startReadingStdoutTee(t, io.Discard, bin, args...)
}

// startReadingStdoutTee is startReadingStdout that also copies stderr to tee,
// for a test that waits for a log line.
func startReadingStdoutTee(t *testing.T, tee io.Writer, bin string, args ...string) (*process, *bufio.Reader) {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = io.MultiWriter(&p.stderr, t.Output(), tee)
	// A child the binary left behind may hold its output open: do not let
	// that block Wait.
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	})
	return p, bufio.NewReader(out)
}

// readLine reads one stdout line within the bound.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line := make(chan string, 1)
	go func() { s, _ := r.ReadString('\n'); line <- strings.TrimSpace(s) }()
	select {
	case s := <-line:
		return s
	case <-time.After(waitBound):
		t.Fatalf("no line on stdout within %s", waitBound)
		return ""
	}
}

// terminate sends SIGTERM and returns the exit code.
func (p *process) terminate(t *testing.T) int {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t)
}

func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(waitBound):
		t.Fatalf("%s did not exit within %s", p.cmd.Path, waitBound)
		return -1
	}
}

func post(g Gomega, url, body string) (int, string) {
	code, b, err := postRaw(url, body)
	g.Expect(err).NotTo(HaveOccurred())
	return code, b
}

func postRaw(url, body string) (int, string, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func freePort(t *testing.T) int { return natstest.FreePort(t) }

func sample(name string) string { return filepath.Join("..", "..", "config", "samples", name+".yaml") }

func TestDevServesTheSamplesWithNoOtherFlags(t *testing.T) {
	for style, want := range map[string]string{
		"sync-chain":        `{"sku":"a1","cart":"loaded","priced":true,"taxed":true}`,
		"sync-orchestrated": `{"charge":{"sku":"a1","valid":true,"charged":true},"reserve":{"sku":"a1","valid":true,"reserved":true},"confirmed":true}`,
		// The async styles run against an embedded NATS server, through the gateway.
		"async-orchestrated": `{"sku":"a1","valid":true,"picked":true,"packed":true,"shipped":true}`,
		"choreography":       `{"sku":"a1","reserved":true,"charged":true}`,
		"hybrid":             `{"charge":{"sku":"a1","valid":true,"charged":true},"reserve":{"sku":"a1","valid":true,"reserved":true}}`,
	} {
		t.Run(style, func(t *testing.T) {
			g := NewWithT(t)
			p, stdout := startReadingStdout(t, runtimeBin, "dev", "-f", sample(style))
			url := readLine(t, stdout)
			g.Expect(url).To(MatchRegexp(`^http://127\.0\.0\.1:\d+/$`))
			code, body := post(g, url, `{"sku":"a1"}`)
			g.Expect(code).To(Equal(http.StatusOK), body)
			g.Expect(body).To(MatchJSON(want))
			g.Expect(p.terminate(t)).To(Equal(0), p.stderr.String())
		})
	}
}

func TestDevRunsStepsAsCommandsAndURLs(t *testing.T) {
	g := NewWithT(t)
	taxPort := freePort(t)
	start(t, demoStepBin, "--addr=127.0.0.1:"+strconv.Itoa(taxPort), "--mode=transform", "--set=taxed=by-url")
	g.Eventually(func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", taxPort))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}).
		WithTimeout(waitBound).WithPolling(20 * time.Millisecond).Should(Succeed())

	p, stdout := startReadingStdout(t, runtimeBin, "dev", "-f", sample("sync-chain"),
		"--step", "pricing=cmd:"+demoStepBin+" --mode=transform --set=priced=by-command",
		"--step", fmt.Sprintf("tax=url:http://127.0.0.1:%d", taxPort))
	url := readLine(t, stdout)
	code, body := post(g, url, `{}`)
	g.Expect(code).To(Equal(http.StatusOK), body)
	g.Expect(body).To(MatchJSON(`{"cart":"loaded","priced":"by-command","taxed":"by-url"}`))
	g.Expect(p.terminate(t)).To(Equal(0), p.stderr.String())
	g.Expect(p.stderr.String()).To(ContainSubstring("Started step command"))
}

func TestDevRefusesBadInputWithOneLine(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown step":     {[]string{"-f", sample("sync-chain"), "--step", "nope=url:http://127.0.0.1:1"}, "has no step nope"},
		"malformed --step": {[]string{"-f", sample("sync-chain"), "--step", "cart"}, "want NAME=cmd:COMMAND or NAME=url:URL"},
		"unreadable file":  {[]string{"-f", "does-not-exist.yaml"}, "does-not-exist.yaml"},
		"port taken":       {[]string{"-f", sample("sync-chain"), "--addr", taken.Addr().String()}, "address already in use"},
		"no file":          {nil, "-f WORKFLOW.yaml is required"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			p := start(t, runtimeBin, append([]string{"dev"}, tc.args...)...)
			g.Expect(p.wait(t)).NotTo(Equal(0))
			lines := strings.Split(strings.TrimSpace(p.stderr.String()), "\n")
			g.Expect(lines).To(HaveLen(1), p.stderr.String())
			g.Expect(lines[0]).To(And(HavePrefix("patchbay-runtime: "), ContainSubstring(tc.want)))
		})
	}
}

// compiledSample compiles a sample Workflow as the operator does.
func compiledSample(g Gomega, style string) (*v1alpha1.Workflow, *plan.Plan) {
	wf, err := dev.LoadWorkflow(sample(style))
	g.Expect(err).NotTo(HaveOccurred())
	p, err := topology.Compile(wf)
	g.Expect(err).NotTo(HaveOccurred())
	return wf, p
}

func TestRolesRunFromAPlanFileAndDrainOnSIGTERM(t *testing.T) {
	g := NewWithT(t)
	// The sample's diamond: validate, then charge and reserve, then confirm.
	// The test holds charge for as long as the drain takes, so its attempt
	// and the run may not time out on a slow machine.
	const held = "charge"
	wf, p := compiledSample(g, "sync-orchestrated")
	p.Step(held).Policy.Timeout = plan.D(time.Minute)
	p.Entry.Timeout = plan.D(time.Minute)
	b, err := p.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	planFile := filepath.Join(t.TempDir(), "plan.json")
	g.Expect(os.WriteFile(planFile, b, 0o600)).To(Succeed())

	addr := func() string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }
	apps, sidecars, admins := map[string]string{}, map[string]string{}, map[string]string{}
	var resolve []string
	for _, st := range wf.Spec.Steps {
		apps[st.Name], sidecars[st.Name], admins[st.Name] = addr(), addr(), addr()
		args := append([]string{"--addr=" + apps[st.Name]}, st.Args...)
		if st.Name == held {
			args = append(args, "--hold")
		}
		start(t, demoStepBin, args...)
		resolve = append(resolve, "--resolve", st.Name+"=http://"+sidecars[st.Name])
	}
	for _, st := range wf.Spec.Steps {
		start(t, runtimeBin, "sidecar", "--plan", planFile, "--step", st.Name, "--listen", sidecars[st.Name],
			"--admin-listen", admins[st.Name], "--app-url", "http://"+apps[st.Name])
	}
	orchAddr := addr()
	orch := start(t, runtimeBin, append([]string{"orchestrator", "--plan", planFile, "--listen", orchAddr}, resolve...)...)
	ready := []string{orchAddr}
	for _, a := range admins {
		ready = append(ready, a)
	}
	for _, u := range ready {
		g.Eventually(func() (int, error) {
			resp, err := http.Get("http://" + u + "/readyz")
			if err != nil {
				return 0, err
			}
			resp.Body.Close()
			return resp.StatusCode, nil
		}).WithTimeout(waitBound).WithPolling(20*time.Millisecond).Should(Equal(http.StatusOK), u)
	}

	// A run is in flight, held by the charge step.
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, body, err := postRaw("http://"+orchAddr+"/", `{"sku":"a1"}`)
		done <- result{code, body, err}
	}()
	inFlight := func() (int64, error) {
		resp, err := http.Get("http://" + apps[held] + "/_demo/stats")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		var s struct{ InFlight int64 }
		return s.InFlight, json.NewDecoder(resp.Body).Decode(&s)
	}
	g.Eventually(inFlight).WithTimeout(waitBound).WithPolling(10 * time.Millisecond).Should(BeEquivalentTo(1))

	// SIGTERM: the orchestrator stops accepting, but the run in flight finishes.
	g.Expect(orch.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Eventually(func() error {
		c, err := net.Dial("tcp", orchAddr)
		if err == nil {
			c.Close()
		}
		return err
	}).WithTimeout(waitBound).WithPolling(10 * time.Millisecond).Should(HaveOccurred())
	resp, err := http.Post("http://"+apps[held]+"/_demo/release", "", nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()

	var r result
	g.Eventually(done).WithTimeout(waitBound).Should(Receive(&r))
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.code).To(Equal(http.StatusOK), r.body)
	g.Expect(r.body).To(MatchJSON(`{"charge":{"sku":"a1","valid":true,"charged":true},"reserve":{"sku":"a1","valid":true,"reserved":true},"confirmed":true}`))
	g.Expect(orch.wait(t)).To(Equal(0), orch.stderr.String())
	g.Expect(orch.stderr.String()).To(ContainSubstring(`"msg":"Draining"`))
}
