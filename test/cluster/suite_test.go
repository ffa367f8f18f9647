//go:build cluster

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/test/clustertest"
)

const (
	releaseNamespace = "patchbay-system"
	// namespace holds the Broker, the samples and the probe. The cluster's
	// admission defaults enforce the restricted Pod Security Standard in every
	// namespace; the label says so once more, for clusters without them.
	namespace = "patchbay-cluster-test"
	probeName = "probe"
)

var (
	root = clustertest.Root

	k8sClient client.Client
	env       suiteEnv
	probeIP   string
)

// suiteEnv is what hack/test-cluster.sh passes on.
type suiteEnv struct {
	kubeconfig, helm, version, natsImage, probeImage string
}

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "patchbay on a real node")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	env = suiteEnv{
		kubeconfig: os.Getenv("KUBECONFIG"),
		helm:       os.Getenv("HELM"),
		version:    os.Getenv("VERSION"),
		natsImage:  os.Getenv("NATS_IMG"),
		probeImage: os.Getenv("PROBE_IMG"),
	}
	for name, v := range map[string]string{"KUBECONFIG": env.kubeconfig, "HELM": env.helm, "VERSION": env.version, "NATS_IMG": env.natsImage, "PROBE_IMG": env.probeImage} {
		Expect(v).NotTo(BeEmpty(), "%s is unset: run make test-cluster", name)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = clustertest.NewClient(cfg)
	Expect(err).NotTo(HaveOccurred())

	By("installing the chart with the locally built images")
	run(ctx, env.helm, "upgrade", "--install", "patchbay", filepath.Join(root, "charts", "patchbay"),
		"--namespace", releaseNamespace, "--create-namespace",
		"--set", "image.tag="+env.version, "--set", "runtimeImage.tag="+env.version,
		"--set", "natsImage="+env.natsImage, "--wait", "--timeout", "5m")
	// The image tag stays the same when make images rebuilds it: restart the
	// manager so that it runs the image just loaded.
	kubectl(ctx, "rollout", "restart", "-n", releaseNamespace, "deployment/patchbay-manager")
	kubectl(ctx, "rollout", "status", "-n", releaseNamespace, "deployment/patchbay-manager", "--timeout=3m")

	By("starting from an empty namespace")
	deleteNamespace(ctx)
	kubectl(ctx, "create", "namespace", namespace)
	kubectl(ctx, "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
	DeferCleanup(func(ctx SpecContext) {
		if CurrentSpecReport().Failed() || suiteFailed() {
			dumpDiagnostics(ctx)
		}
		if os.Getenv("KEEP_NAMESPACE") != "" {
			fmt.Fprintf(GinkgoWriter, "KEEP_NAMESPACE is set: namespace %s is left for a look\n", namespace)
			return
		}
		deleteNamespace(ctx)
	}, NodeTimeout(5*time.Minute))

	By("applying the Broker and the samples")
	args := []string{"apply", "--server-side", "-n", namespace, "-f", filepath.Join(root, "config", "samples", "broker.yaml")}
	for _, s := range samples {
		args = append(args, "-f", filepath.Join(root, "config", "samples", s.style+".yaml"))
	}
	kubectl(ctx, args...)
	startProbe(ctx)
}, NodeTimeout(10*time.Minute))

// suiteFailed is true once any spec of the suite failed.
var failures int

var _ = ReportAfterEach(func(r SpecReport) {
	if r.Failed() {
		failures++
	}
})

func suiteFailed() bool { return failures > 0 }

// run runs a command with the suite's KUBECONFIG and returns its stdout.
func run(ctx context.Context, name string, args ...string) string {
	GinkgoHelper()
	out, err := runErr(ctx, name, args...)
	Expect(err).NotTo(HaveOccurred(), "%s %s", name, strings.Join(args, " "))
	return out
}

func runErr(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.kubeconfig)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

func kubectl(ctx context.Context, args ...string) {
	GinkgoHelper()
	run(ctx, "kubectl", args...)
}

func deleteNamespace(ctx context.Context) {
	GinkgoHelper()
	_, _ = runErr(ctx, "kubectl", "delete", "namespace", namespace, "--ignore-not-found", "--wait=false")
	Eventually(func() bool {
		var ns corev1.Namespace
		return client.IgnoreNotFound(k8sClient.Get(ctx, client.ObjectKey{Name: namespace}, &ns)) == nil && ns.Name == ""
	}).WithContext(ctx).WithTimeout(4*time.Minute).WithPolling(time.Second).Should(BeTrue(), "namespace %s is not gone", namespace)
}

func dumpDiagnostics(ctx context.Context) {
	for _, args := range [][]string{
		{"get", "pods,svc,networkpolicies,workflows,brokers", "-n", namespace, "-o", "wide"},
		{"get", "pods", "-n", releaseNamespace, "-o", "wide"},
		{"get", "events", "-n", namespace, "--sort-by=.lastTimestamp"},
		{"logs", "-n", releaseNamespace, "deploy/patchbay-manager", "--tail=100"},
	} {
		out, err := runErr(ctx, "kubectl", args...)
		fmt.Fprintf(GinkgoWriter, "$ kubectl %s\n%s%v\n", strings.Join(args, " "), out, err)
	}
}

// startProbe runs the probe pod: a client inside the cluster that belongs to
// no Workflow's graph.
func startProbe(ctx context.Context) {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: probeName, Namespace: namespace, Labels: map[string]string{"app": probeName}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:            probeName,
				Image:           env.probeImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Ports:           []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstrPort(8080),
				}}, PeriodSeconds: 1},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(pod), pod)).To(Succeed())
		g.Expect(podReady(pod)).To(BeTrue(), "probe pod %s", pod.Status.Phase)
	}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	probeIP = pod.Status.PodIP
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// answer is an HTTP response as the suite sees it.
type answer struct {
	Status  int               `json:"status"`
	Body    string            `json:"body"`
	Headers map[string]string `json:"headers"`
	Error   string            `json:"error"`
}

// fromHost sends a request from this machine.
func fromHost(ctx context.Context, method, url, body string, headers map[string]string) answer {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return answer{Error: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{Error: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{Status: resp.StatusCode, Body: string(b), Headers: map[string]string{}}
	for k := range resp.Header {
		a.Headers[k] = resp.Header.Get(k)
	}
	return a
}

// fromProbe sends a request from the probe pod inside the cluster.
func fromProbe(ctx context.Context, method, url, body string, headers map[string]string) answer {
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range headers {
		h[k] = v
	}
	in, _ := json.Marshal(map[string]any{"method": method, "url": url, "body": body, "headers": h, "timeout": "15s"})
	a := fromHost(ctx, http.MethodPost, "http://"+probeIP+":8080/http", string(in), nil)
	if a.Error != "" || a.Status != http.StatusOK {
		return answer{Error: fmt.Sprintf("probe: %d %s %s", a.Status, a.Body, a.Error)}
	}
	var out answer
	if err := json.Unmarshal([]byte(a.Body), &out); err != nil {
		return answer{Error: err.Error()}
	}
	return out
}

// probeDial reports whether the probe pod can open a TCP connection to addr.
func probeDial(ctx context.Context, addr string) error {
	a := fromHost(ctx, http.MethodGet, "http://"+probeIP+":8080/dial?timeout=3s&addr="+addr, "", nil)
	if a.Error != "" || a.Status != http.StatusOK {
		return fmt.Errorf("probe: %d %s %s", a.Status, a.Body, a.Error)
	}
	var out struct{ Error string }
	if err := json.Unmarshal([]byte(a.Body), &out); err != nil {
		return err
	}
	if out.Error != "" {
		return fmt.Errorf("%s", out.Error)
	}
	return nil
}

func probeResolve(ctx context.Context, name string) ([]string, error) {
	a := fromHost(ctx, http.MethodGet, "http://"+probeIP+":8080/resolve?name="+name, "", nil)
	if a.Error != "" || a.Status != http.StatusOK {
		return nil, fmt.Errorf("probe: %d %s %s", a.Status, a.Body, a.Error)
	}
	var out struct {
		Addrs []string
		Error string
	}
	if err := json.Unmarshal([]byte(a.Body), &out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return nil, fmt.Errorf("%s", out.Error)
	}
	return out.Addrs, nil
}
