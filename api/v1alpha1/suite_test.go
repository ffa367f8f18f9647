package v1alpha1_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The suite installs the generated CRDs into a real kube-apiserver and drives it
// with kubectl, as a user would: `kubectl apply --dry-run=server`.
var (
	testEnv *envtest.Environment
	// admin is the cluster administrator kubectl runs as.
	admin *envtest.AuthenticatedUser
)

func TestAPIValidation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "API validation")
}

var _ = BeforeSuite(func() {
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS must name the envtest binaries: run the tests with `make test`")
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	_, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	admin, err = testEnv.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// kubectl runs kubectl against the envtest apiserver and returns its combined output.
func kubectl(args ...string) (string, error) {
	k, err := admin.Kubectl()
	if err != nil {
		return "", err
	}
	stdout, stderr, err := k.Run(args...)
	out, _ := io.ReadAll(stdout)
	errOut, _ := io.ReadAll(stderr)
	return strings.TrimSpace(string(out) + string(errOut)), err
}

// applyDryRun submits a manifest with `kubectl apply --dry-run=server`.
func applyDryRun(manifest string) (string, error) {
	f := filepath.Join(GinkgoT().TempDir(), "manifest.yaml")
	Expect(os.WriteFile(f, []byte(manifest), 0o600)).To(Succeed())
	return kubectl("apply", "--dry-run=server", "-n", "default", "-f", f)
}
