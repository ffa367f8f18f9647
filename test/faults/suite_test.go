//go:build faults

// Package faults is the fault-injection suite (make test-faults): real
// patchbay-runtime role processes, demo-step apps and a nats-server on a file
// store, SIGKILLed and restarted under load, and every predicted failure of
// the async data plane as a case of its own. Cases whose feature has not
// landed carry a Label("pending-feature:NAME"); make test-faults leaves them
// out (docs/testing.md).
package faults

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/proctest"
)

// waitBound bounds a wait for one thing on a loaded 2-core machine; pollEvery
// is how often a wait looks.
const (
	waitBound = 60 * time.Second
	pollEvery = 50 * time.Millisecond
)

var (
	root = func() string {
		_, file, _, _ := goruntime.Caller(0)
		return filepath.Join(filepath.Dir(file), "..", "..")
	}()
	// The binaries the suite runs.
	runtimeBin, demoStepBin, natsBin string
)

func TestFaults(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Fault injection")
}

var _ = BeforeSuite(func() {
	dir, err := os.MkdirTemp("", "patchbay-faults-bin-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)
	var wg sync.WaitGroup
	var errs [3]error
	wg.Go(func() {
		runtimeBin, errs[0] = proctest.Build(dir, filepath.Join(root, "images", "runtime"), "patchbay-runtime")
	})
	wg.Go(func() {
		demoStepBin, errs[1] = proctest.Build(dir, filepath.Join(root, "images", "demo-step"), "demo-step")
	})
	wg.Go(func() { natsBin, errs[2] = proctest.NATSServer() })
	wg.Wait()
	for _, err := range errs {
		Expect(err).NotTo(HaveOccurred())
	}
})

// soakRows are the per-style figures of the soak, printed after the suite.
var (
	soakMu   sync.Mutex
	soakRows []soakRow
)

var _ = AfterSuite(func() {
	soakMu.Lock()
	defer soakMu.Unlock()
	if len(soakRows) == 0 {
		return
	}
	fmt.Fprint(os.Stdout, soakTable(soakRows))
})
