package main

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// The sidecar's memory is mostly the pages of its binary that package
// initialisation touches (docs/architecture.md, The runtime binaries): a
// package that only the other roles need must not come back into this binary
// through an import.
func TestSidecarLinksNoneOfWhatOnlyTheOtherRolesNeed(t *testing.T) {
	g := NewWithT(t)
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	g.Expect(err).NotTo(HaveOccurred())
	deps := strings.Fields(string(out))
	g.Expect(deps).To(ContainElement("github.com/patchbay-dev/patchbay/internal/runtime/sidecar"), "the list is the sidecar's")
	for _, heavy := range []string{
		"github.com/nats-io/nats-server/", // patchbay-runtime dev's embedded broker
		"k8s.io/",                         // the API types, apimachinery, client-go
		"sigs.k8s.io/",
		"github.com/patchbay-dev/patchbay/api/v1alpha1",
		"github.com/patchbay-dev/patchbay/internal/topology", // the compiler (dev, graph)
		"github.com/patchbay-dev/patchbay/internal/runtime/dev",
		"github.com/patchbay-dev/patchbay/internal/runtime/cli/devcli",
		// otlptracehttp's configuration links gRPC (and grpc-gateway): 4.7 MiB
		// of resident memory; telemetry's own OTLP/HTTP client sends the spans.
		"google.golang.org/grpc",
		"github.com/grpc-ecosystem/",
	} {
		for _, d := range deps {
			g.Expect(d).NotTo(HavePrefix(heavy), "patchbay-sidecar links %s", d)
		}
	}
}

// patchbay-sidecar runs the sidecar role, with its flags, and no other role.
func TestSidecarRunsTheSidecarRoleAlone(t *testing.T) {
	g := NewWithT(t)
	var stdout, stderr bytes.Buffer
	g.Expect(program.Main(context.Background(), []string{"sidecar", "-h"}, &stdout, &stderr)).To(Equal(0))
	g.Expect(stderr.String()).To(And(ContainSubstring("-step"), ContainSubstring("-drained-restart-after")))

	stderr.Reset()
	g.Expect(program.Main(context.Background(), []string{"orchestrator", "--plan", "x"}, &stdout, &stderr)).To(Equal(1))
	g.Expect(stderr.String()).To(Equal("patchbay-sidecar: unknown role \"orchestrator\": want sidecar\n"))

	stderr.Reset()
	g.Expect(program.Main(context.Background(), nil, &stdout, &stderr)).To(Equal(2))
	g.Expect(stderr.String()).To(ContainSubstring("patchbay-sidecar sidecar --plan FILE --step NAME"))
	g.Expect(stdout.String()).To(BeEmpty())
}
