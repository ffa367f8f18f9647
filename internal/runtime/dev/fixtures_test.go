package dev_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/demostep"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev/devtest"
	"github.com/patchbay-dev/patchbay/internal/runtime/serve"
)

// The helpers read as Given (a running data plane), When (a request), Expect
// (what the caller and the steps saw).

var syncStyles = []string{"sync-chain", "sync-orchestrated"}

// stepSpec is one step of a test Workflow.
type stepSpec = devtest.Step

// givenWorkflow runs the Workflow's data plane until the test ends.
func givenWorkflow(t *testing.T, yaml string, steps ...string) *dev.Env {
	t.Helper()
	file := filepath.Join(t.TempDir(), "workflow.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return givenFile(t, file, steps...)
}

// givenSpec runs the data plane of the Workflow "test" with the spec (YAML as
// it stands under a manifest's spec:) until the test ends.
func givenSpec(t *testing.T, spec string, steps ...string) *dev.Env {
	t.Helper()
	return givenWorkflow(t, devtest.Manifest(spec), steps...)
}

func givenSample(t *testing.T, style string) *dev.Env {
	t.Helper()
	return givenFile(t, filepath.Join("..", "..", "..", "config", "samples", style+".yaml"))
}

// expectSampleAnswers runs the sample of the style and expects it to answer
// {"id":7} with 200 and want.
func expectSampleAnswers(t *testing.T, g Gomega, style, want string) (*dev.Env, answer) {
	t.Helper()
	env := givenSample(t, style)
	a := whenPostJSON(t, env.EntryURL, `{"id":7}`)
	g.Expect(a.Code).To(Equal(http.StatusOK), "%s", a.Body)
	g.Expect(a.Body).To(MatchJSON(want))
	return env, a
}

func givenFile(t *testing.T, file string, steps ...string) *dev.Env {
	t.Helper()
	return devtest.Start(t, dev.Options{File: file, Steps: steps})
}

// answer is what a caller got.
type answer = devtest.Answer

var client = devtest.Client

func whenPost(t *testing.T, url, contentType string, body []byte) answer {
	t.Helper()
	a, err := devtest.Post(url, contentType, body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func whenPostJSON(t *testing.T, url, body string) answer {
	t.Helper()
	return whenPost(t, url, "application/json", []byte(body))
}

func getJSON(g Gomega, url string, into any) { devtest.GetJSON(g, url, into) }

// stepStats is what the step's own demo-step observed.
func stepStats(g Gomega, env *dev.Env, step string) demostep.Stats {
	var s demostep.Stats
	getJSON(g, env.AppURL(step)+"/_demo/stats", &s)
	return s
}

// barrierURL hosts a demo-step whose /_demo/barrier the steps under test join:
// they can only pass it while all parties are in flight at once.
func barrierURL(t *testing.T, name string, parties int) string {
	t.Helper()
	cfg, err := demostep.Parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: demostep.New(cfg)}
	l, err := serve.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return fmt.Sprintf("http://%s/_demo/barrier?name=%s&parties=%d", l.Addr(), name, parties)
}

// eventually polls with a bound generous enough for a loaded 2-core machine.
func eventually(g Gomega, f any) AsyncAssertion {
	return g.Eventually(f).WithTimeout(20 * time.Second).WithPolling(10 * time.Millisecond)
}

// readBody copies the response's body into w and closes it.
func readBody(w io.Writer, resp *http.Response) {
	defer resp.Body.Close()
	_, _ = io.Copy(w, resp.Body)
}
