package render

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/golden"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// sampleWorkflows are the Workflow samples, one per style, by file name.
var sampleWorkflows = []string{"sync-chain.yaml", "sync-orchestrated.yaml", "async-orchestrated.yaml", "choreography.yaml", "hybrid.yaml"}

// sampleInput compiles a sample as the controller would in namespace default.
func sampleInput(t *testing.T, file string) *WorkflowInput {
	t.Helper()
	var wf v1alpha1.Workflow
	readSample(t, file, &wf)
	wf.Namespace, wf.UID = goldenNamespace, goldenUID
	p, err := topology.Compile(&wf)
	if err != nil {
		t.Fatalf("compile %s: %v", file, err)
	}
	in := mustInput(t, &wf, p)
	if wf.Spec.Style.IsAsync() {
		b := sampleBroker(t)
		if b.Name != wf.BrokerName() {
			t.Fatalf("%s uses Broker %s, the sample is %s", file, wf.BrokerName(), b.Name)
		}
		in.Streams = BrokerStreams(b)
		in.NATSCredentialsHash = CredentialsHash([]byte("golden credentials"))
		in.NATSUser = "UGOLDENUSER"
	}
	return in
}

// TestSamplesGolden pins every child of every sample Workflow in
// testdata/<sample>/<kind>-<name>.yaml.
func TestSamplesGolden(t *testing.T) {
	for _, file := range sampleWorkflows {
		t.Run(file, func(t *testing.T) {
			in := sampleInput(t, file)
			objs := WorkflowObjects(in)
			if in.Workflow.Spec.Style.IsAsync() {
				objs = append(objs, WorkflowCredentialsSecret(in, []byte("golden credentials")))
			}
			golden.CheckDir(t, strings.TrimSuffix(filepath.Base(file), ".yaml"), objectFiles(t, objs))
		})
	}
}
