// Package devtest is what the tests that run the dev data plane share (in
// process, and through the patchbay-runtime binary): the test Workflows, a
// running data plane, and calls to it.
package devtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
)

// Step is one step of a test Workflow, whose app is a demo-step run with Args.
type Step struct {
	Name       string
	Args       []string
	DependsOn  []string
	Resilience string // inline YAML, such as {timeout: 100ms}
}

// WorkflowYAML renders a Workflow "test" of style with a workflow-wide
// resilience (inline YAML, none if empty).
func WorkflowYAML(style, resilience string, steps ...Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "style: %s\n", style)
	if resilience != "" {
		fmt.Fprintf(&b, "resilience: %s\n", resilience)
	}
	b.WriteString("steps:\n")
	for _, s := range steps {
		fmt.Fprintf(&b, "- name: %s\n  image: ghcr.io/patchbay-dev/demo-step:0.1.0\n", s.Name)
		if len(s.Args) > 0 {
			quoted := make([]string, len(s.Args))
			for i, a := range s.Args {
				quoted[i] = fmt.Sprintf("%q", a)
			}
			fmt.Fprintf(&b, "  args: [%s]\n", strings.Join(quoted, ", "))
		}
		if len(s.DependsOn) > 0 {
			fmt.Fprintf(&b, "  dependsOn: [%s]\n", strings.Join(s.DependsOn, ", "))
		}
		if s.Resilience != "" {
			fmt.Fprintf(&b, "  resilience: %s\n", s.Resilience)
		}
	}
	return Manifest(b.String())
}

// Manifest is the manifest of the Workflow "test" with the spec (YAML as it
// stands under a manifest's spec:, which Manifest indents).
func Manifest(spec string) string {
	var b strings.Builder
	b.WriteString("apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata: {name: test}\nspec:\n")
	for line := range strings.Lines(strings.TrimLeft(spec, "\n")) {
		b.WriteString("  " + line)
	}
	return b.String()
}

// Answer is what a caller got.
type Answer struct {
	Code   int
	Header http.Header
	Body   []byte
}

// RunError decodes the JSON error of a failed run.
func (a Answer) RunError(g gomega.Gomega) contract.Error {
	var e contract.Error
	g.Expect(json.Unmarshal(a.Body, &e)).To(gomega.Succeed(), "a failed run answers JSON: %s", a.Body)
	return e
}

// Client is the tests' HTTP client; a minute bounds every call.
var Client = &http.Client{Timeout: time.Minute}

// Do sends req with Client and reads the whole answer.
func Do(req *http.Request) (Answer, error) {
	resp, err := Client.Do(req)
	if err != nil {
		return Answer{}, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Answer{}, fmt.Errorf("read answer of %s %s: %w", req.Method, req.URL, err)
	}
	return Answer{Code: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Post posts body of contentType to url.
func Post(url, contentType string, body []byte) (Answer, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	req.Header.Set("Content-Type", contentType)
	return Do(req)
}

// GetJSON decodes the JSON that url answers with 200 into into.
func GetJSON(g gomega.Gomega, url string, into any) {
	resp, err := Client.Get(url)
	g.Expect(err).NotTo(gomega.HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(gomega.Equal(http.StatusOK), "GET %s", url)
	g.Expect(json.NewDecoder(resp.Body).Decode(into)).To(gomega.Succeed())
}

// Get gets url.
func Get(url string) (Answer, error) {
	req, err := http.NewRequest(http.MethodGet, url, http.NoBody)
	if err != nil {
		return Answer{}, err
	}
	return Do(req)
}

// Telemetry logs to the test's output and traces nowhere.
func Telemetry(t testing.TB) *telemetry.Telemetry {
	t.Helper()
	log, err := telemetry.NewLogger(t.Output(), "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	tracing, _ := telemetry.NewTracing(context.Background(), "", "test")
	return telemetry.New(log, tracing)
}

// Start runs a dev data plane of opts (its Workflow, steps and broker) until
// the test ends: on free loopback ports, with Telemetry, its steps' output
// to the test's, draining for at most 5s.
func Start(t testing.TB, opts dev.Options) *dev.Env {
	t.Helper()
	opts.Addr, opts.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	opts.Stderr, opts.Telemetry = t.Output(), Telemetry(t)
	opts.Serve = serve.Options{DrainTimeout: 5 * time.Second}
	env, err := dev.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start the dev data plane of %s: %v", opts.File, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop the dev data plane: %v", err)
		}
	})
	return env
}
