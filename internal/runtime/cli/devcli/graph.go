package devcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
	"github.com/patchbay-dev/patchbay/internal/runtime/dev"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// runGraph draws a Workflow's topology as the compiler builds it: the same
// Plan the operator would apply, drawn by topology.Graph. It reads the
// Workflow from a file, or from stdin with -f -, so that a Workflow in a
// cluster can be drawn with kubectl get workflow NAME -o yaml | ... graph -f -.
func runGraph(_ context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.NewFlagSet("graph", stderr)
	var file string
	fs.StringVar(&file, "f", "", "the Workflow YAML to draw, - for stdin (required)")
	fs.StringVar(&file, "file", "", "same as -f")
	format := fs.String("format", "mermaid", "mermaid (a Mermaid flowchart) or dot (a Graphviz digraph)")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if file == "" {
		return errors.New("graph: -f WORKFLOW.yaml is required")
	}
	if *format != "mermaid" && *format != "dot" {
		return fmt.Errorf("graph: --format %q: want mermaid or dot", *format)
	}
	var (
		b   []byte
		err error
	)
	if file == "-" {
		b, err = io.ReadAll(stdin)
		file = "stdin"
	} else {
		b, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("read workflow: %w", err)
	}
	wf, err := dev.ParseWorkflow(file, b)
	if err != nil {
		return err
	}
	p, err := topology.Compile(wf)
	if err != nil {
		return fmt.Errorf("workflow %s does not compile: %w", wf.Name, err)
	}
	g := topology.Graph(p)
	out := g.Mermaid
	if *format == "dot" {
		out = g.DOT
	}
	_, err = io.WriteString(stdout, out)
	return err
}
