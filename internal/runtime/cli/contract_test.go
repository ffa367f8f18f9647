package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The operator renders the runtime's command lines (internal/render) and this
// binary parses them: every rendered Deployment's runtime args must pass the
// real flag sets, so neither side can rename or drop a flag alone.
func TestRenderedArgsParseWithTheRuntimeFlags(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "render", "testdata", "*", "deployment-*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden Deployments under internal/render/testdata")
	}
	roles := map[string]int{}
	for _, file := range files {
		t.Run(filepath.Base(filepath.Dir(file))+"/"+filepath.Base(file), func(t *testing.T) {
			g := NewWithT(t)
			b, err := os.ReadFile(file)
			g.Expect(err).NotTo(HaveOccurred())
			var d appsv1.Deployment
			g.Expect(yaml.UnmarshalStrict(b, &d)).To(Succeed())

			var runtime []corev1.Container
			for _, c := range d.Spec.Template.Spec.InitContainers {
				if c.Name == "patchbay-sidecar" {
					runtime = append(runtime, c)
				}
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Name == "orchestrator" || c.Name == "gateway" {
					runtime = append(runtime, c)
				}
			}
			g.Expect(runtime).To(HaveLen(1), "a workflow's Deployment runs exactly one runtime container")
			c := runtime[0]
			if c.Name == "patchbay-sidecar" {
				g.Expect(c.Command).To(Equal([]string{"/patchbay-sidecar"}), "the sidecar runs patchbay-sidecar (images/runtime/sidecar), which has the Sidecar role")
			} else {
				g.Expect(c.Command).To(BeEmpty(), "the image's entrypoint is patchbay-runtime")
			}
			g.Expect(c.Args).NotTo(BeEmpty())
			role, args := c.Args[0], c.Args[1:]
			if c.Name == "patchbay-sidecar" {
				g.Expect(role).To(Equal("sidecar"))
			} else {
				g.Expect(role).To(Equal(c.Name))
			}
			var stderr bytes.Buffer
			switch role {
			case "sidecar":
				_, err = parseSidecar(args, &stderr)
			case "orchestrator":
				_, err = parseOrchestrator(args, &stderr)
			case "gateway":
				_, err = parseGateway(args, &stderr)
			}
			g.Expect(err).NotTo(HaveOccurred(), "patchbay-runtime %s %v: %s", role, args, stderr.String())
			roles[role]++
		})
	}
	// The samples cover every role that runs in a cluster.
	g := NewWithT(t)
	g.Expect(roles).To(And(HaveKey("sidecar"), HaveKey("orchestrator"), HaveKey("gateway")))
}
