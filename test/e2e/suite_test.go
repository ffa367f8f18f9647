//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/test/clustertest"
)

const (
	// releaseNamespace is where the chart is installed; samplesNamespace is
	// where config/samples are applied. Both enforce the restricted Pod
	// Security Standard, so every pod the chart and the manager create must
	// pass it.
	releaseNamespace = "patchbay-system"
	samplesNamespace = "shop"
	release          = "patchbay"
	// managerAccount is the ServiceAccount the chart creates for the manager.
	managerAccount = "patchbay"
)

var (
	root = clustertest.Root

	cluster   *kwokCluster
	k8sClient client.Client
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "patchbay cluster e2e on kwok")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	t := toolsFromEnv()
	name := os.Getenv("E2E_CLUSTER_NAME")
	if name == "" {
		name = fmt.Sprintf("patchbay-e2e-%d", os.Getpid())
	}
	// hack/test-e2e.sh names the directory, to delete a cluster the suite
	// could not.
	dir := os.Getenv("E2E_WORKDIR")
	if dir == "" {
		var err error
		dir, err = os.MkdirTemp("", name+"-")
		Expect(err).NotTo(HaveOccurred())
	}
	DeferCleanup(func() {
		// Keep the logs of a failed run.
		if suiteFailed() {
			fmt.Fprintf(GinkgoWriter, "The e2e suite failed; logs are in %s\n", dir)
			return
		}
		Expect(os.RemoveAll(dir)).To(Succeed())
	})

	By("building the manager")
	manager := filepath.Join(dir, "manager")
	build := exec.CommandContext(ctx, "go", "build", "-o", manager, ".")
	build.Dir = root
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build: %s", out)

	By("creating kwok cluster " + name)
	cluster = createKwokCluster(ctx, t, name, dir)
	DeferCleanup(func(ctx SpecContext) {
		if suiteFailed() {
			for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kwok-controller"} {
				Expect(os.WriteFile(filepath.Join(dir, c+".log"), []byte(cluster.logs(ctx, c)), 0o644)).To(Succeed())
			}
		}
	}, NodeTimeout(time.Minute))

	cfg, err := clientcmd.BuildConfigFromFlags("", cluster.kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = clustertest.NewClient(cfg)
	Expect(err).NotTo(HaveOccurred())

	By("adding a simulated node and three volumes for the Broker's claims")
	givenNode(ctx, "kwok-node-0")
	for i := range 3 {
		givenVolume(ctx, fmt.Sprintf("pv-%d", i), "10Gi")
	}
	givenRestrictedNamespace(ctx, releaseNamespace)
	givenRestrictedNamespace(ctx, samplesNamespace)

	By("installing the chart")
	helmOut, err := cluster.helm(ctx, "install", release, filepath.Join(root, "charts", "patchbay"),
		"--namespace", releaseNamespace, "--wait", "--timeout", "2m")
	Expect(err).NotTo(HaveOccurred(), "helm install: %s", helmOut)

	By("running the manager as the chart's ServiceAccount")
	startManager(ctx, cfg, manager, filepath.Join(dir, "manager.log"))
}, NodeTimeout(10*time.Minute))

var failed bool

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		failed = true
	}
})

func suiteFailed() bool { return failed || CurrentSpecReport().Failed() }

// givenNode registers a node that kwok-controller keeps Ready and that runs
// the pods the scheduler binds to it (without containers).
func givenNode(ctx context.Context, name string) {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("500"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels:      map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	Expect(k8sClient.Create(ctx, node)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(node), node)).To(Succeed())
		g.Expect(node.Status.Conditions).To(ContainElement(And(
			HaveField("Type", corev1.NodeReady), HaveField("Status", corev1.ConditionTrue))))
	}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed(), "kwok did not make node %s Ready", name)
}

// givenVolume adds a PersistentVolume of the given size without a storage
// class: the cluster's static storage, which kube-controller-manager binds to
// the claims of a Broker's StatefulSet. kwok never mounts it.
func givenVolume(ctx context.Context, name, size string) {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kwok-e2e/" + name},
			},
		},
	}
	Expect(k8sClient.Create(ctx, pv)).To(Succeed())
}

func givenRestrictedNamespace(ctx context.Context, name string) {
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted",
			"pod-security.kubernetes.io/warn":    "restricted",
		},
	}})).To(Succeed())
}

// startManager runs the manager binary as a local process (kwok runs no
// containers, so the chart's manager pod is only simulated) with a token of
// the chart's ServiceAccount: the chart's RBAC is all it may use. It is
// stopped when the suite ends.
func startManager(ctx context.Context, admin *rest.Config, binary, logPath string) {
	token, err := cluster.kubectl(ctx, "create", "token", managerAccount, "--namespace", releaseNamespace, "--duration", "2h")
	Expect(err).NotTo(HaveOccurred())

	kubeconfig := filepath.Join(filepath.Dir(logPath), "manager.kubeconfig")
	Expect(clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"kwok": {Server: admin.Host, CertificateAuthorityData: admin.CAData, CertificateAuthority: admin.CAFile}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"manager": {Token: strings.TrimSpace(token)}},
		Contexts:       map[string]*clientcmdapi.Context{"manager": {Cluster: "kwok", AuthInfo: "manager"}},
		CurrentContext: "manager",
	}, kubeconfig)).To(Succeed())

	logFile, err := os.Create(logPath)
	Expect(err).NotTo(HaveOccurred())
	// The same flags as the chart's Deployment, with loopback ports of the
	// kernel's choice and the Lease in the release namespace.
	cmd := exec.Command(binary,
		"--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", releaseNamespace,
		"--metrics-bind-address", "127.0.0.1:0",
		"--health-probe-bind-address", "127.0.0.1:0",
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	dieWithSuite(cmd)
	Expect(cmd.Start()).To(Succeed())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	DeferCleanup(func() {
		defer logFile.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		var exit error
		select {
		case exit = <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			exit = <-exited
		}
		GinkgoWriter.Printf("The manager exited (%v); its log: %s\n", exit, logPath)
	})

	By("waiting for the manager to hold the leader Lease")
	Eventually(func() (string, error) {
		select {
		case err := <-exited:
			exited <- err
			return "", StopTrying(fmt.Sprintf("the manager exited: %v", err))
		default:
		}
		return cluster.kubectl(ctx, "get", "lease", "manager.patchbay.dev", "-n", releaseNamespace, "-o", "jsonpath={.spec.holderIdentity}")
	}).WithContext(ctx).WithTimeout(time.Minute).ShouldNot(BeEmpty(), "see %s", logPath)
}
