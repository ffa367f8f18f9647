package devcli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
)

// graph draws every sample Workflow exactly as the compiler's golden drawings
// (internal/topology/testdata) have it, in both formats, from a file and from
// stdin.
func TestGraphDrawsEverySampleLikeTheGoldens(t *testing.T) {
	samples, err := filepath.Glob(filepath.Join("..", "..", "..", "..", "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	drawn := 0
	for _, sample := range samples {
		if _, err := dev.LoadWorkflow(sample); err != nil {
			continue // not a Workflow: broker.yaml, kustomization.yaml
		}
		name := strings.TrimSuffix(filepath.Base(sample), ".yaml")
		for format, ext := range map[string]string{"mermaid": ".mmd", "dot": ".dot"} {
			t.Run(name+"/"+format, func(t *testing.T) {
				g := NewWithT(t)
				want, err := os.ReadFile(filepath.Join("..", "..", "..", "topology", "testdata", name+ext))
				g.Expect(err).NotTo(HaveOccurred(), "every sample Workflow has golden drawings")
				var stdout, stderr bytes.Buffer
				code := graphProgram.Main(context.Background(), []string{"graph", "-f", sample, "--format", format}, &stdout, &stderr)
				g.Expect(code).To(Equal(0), stderr.String())
				g.Expect(stdout.String()).To(Equal(string(want)))

				in, err := os.ReadFile(sample)
				g.Expect(err).NotTo(HaveOccurred())
				stdout.Reset()
				g.Expect(runGraph(context.Background(), []string{"-f", "-", "--format", format}, bytes.NewReader(in), &stdout, &stderr)).To(Succeed())
				g.Expect(stdout.String()).To(Equal(string(want)))
			})
			drawn++
		}
	}
	if drawn < 2*len(v1alpha1.Styles) {
		t.Fatalf("drew %d sample graphs, want at least %d: a Workflow per style in two formats", drawn, 2*len(v1alpha1.Styles))
	}
}

func TestGraphDefaultsToMermaidAndRefusesMistakes(t *testing.T) {
	g := NewWithT(t)
	sample := filepath.Join("..", "..", "..", "..", "config", "samples", "hybrid.yaml")
	var stdout, stderr bytes.Buffer
	g.Expect(graphProgram.Main(context.Background(), []string{"graph", "-f", sample}, &stdout, &stderr)).To(Equal(0), stderr.String())
	g.Expect(stdout.String()).To(HavePrefix("flowchart LR\n"))

	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"graph"}, "-f WORKFLOW.yaml is required"},
		{[]string{"graph", "-f", sample, "--format", "svg"}, `--format "svg": want mermaid or dot`},
		{[]string{"graph", "-f", filepath.Join("..", "..", "..", "..", "config", "samples", "broker.yaml")}, "holds no Workflow"},
	} {
		stdout.Reset()
		stderr.Reset()
		g.Expect(graphProgram.Main(context.Background(), tc.args, &stdout, &stderr)).To(Equal(1))
		g.Expect(stderr.String()).To(ContainSubstring(tc.err))
		g.Expect(stdout.String()).To(BeEmpty())
	}
}

// A Workflow the compiler refuses is drawn not at all, with the compiler's
// message.
func TestGraphReportsCompileErrors(t *testing.T) {
	g := NewWithT(t)
	const cycle = `apiVersion: patchbay.dev/v1alpha1
kind: Workflow
metadata: {name: loop}
spec:
  style: sync-orchestrated
  steps:
  - {name: a, image: x, dependsOn: [c]}
  - {name: b, image: x, dependsOn: [a]}
  - {name: c, image: x, dependsOn: [b]}
`
	var stdout, stderr bytes.Buffer
	err := runGraph(context.Background(), []string{"-f", "-"}, strings.NewReader(cycle), &stdout, &stderr)
	g.Expect(err).To(MatchError(ContainSubstring("workflow loop does not compile")))
	g.Expect(err.Error()).To(ContainSubstring("cycle"))
	g.Expect(stdout.String()).To(BeEmpty())
}

// graphProgram runs graph as patchbay-runtime does.
var graphProgram = cli.Program{Name: "patchbay-runtime", Roles: []cli.Role{Graph}}
