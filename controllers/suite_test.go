package controllers_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/controllers"
	"github.com/patchbay-dev/patchbay/internal/managertest"
)

// The suite starts one kube-apiserver with the CRDs and runs the real manager
// against it. envtest runs no kube-controller-manager: no pods are created,
// no garbage is collected, and the tests set Deployment and StatefulSet status.

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	scheme  = runtime.NewScheme()
	// k8s reads and writes the API server directly, as a user would.
	k8s client.Client
	// managerCfg impersonates the chart's ServiceAccount, bound to exactly the
	// generated manager role, so that the suite fails if the RBAC markers ask
	// for too little (rbac_test.go also fails if they ask for too much).
	managerCfg *rest.Config
	// auditLog is the API server's audit log: every request, by whom, allowed or not.
	auditLog string
	// manager is the running manager.
	manager *runningManager
)

// The settings the golden files are rendered with (internal/render tests).
var testOptions = controllers.Options{
	RuntimeImage:        "registry.test/patchbay-runtime:test",
	NATSImage:           "registry.test/nats:test",
	ComponentReplicas:   2,
	WorkflowConcurrency: controllers.DefaultWorkflowConcurrency,
	Clock:               testNow,
	BrokerAddress: func(b *v1alpha1.Broker) string {
		url, _ := brokerServers.Load(b.Namespace + "/" + b.Name)
		s, _ := url.(string)
		return s
	},
	GatewayTransport: gateways,
}

// clockAhead is how far the manager's clock runs ahead of the wall clock.
var clockAhead atomic.Int64

// testNow is the manager's clock: tests move it past a drain period
// (advanceClock) rather than wait for one.
func testNow() time.Time { return time.Now().Add(time.Duration(clockAhead.Load())) }

func advanceClock(d time.Duration) { clockAhead.Add(int64(d)) }

// gateways routes the manager's questions to gateways (GET /readmodel) to the
// gateways the tests run, by the host of their Service; a host that no test
// runs a gateway for fails at once, as an absent Service would.
var gateways = &gatewayRoutes{hosts: map[string]*url.URL{}}

type gatewayRoutes struct {
	mu    sync.Mutex
	hosts map[string]*url.URL
}

// route sends the requests for a gateway Service's URL to the server at to.
func (g *gatewayRoutes) route(service, to string) {
	from, err := url.Parse(service)
	Expect(err).NotTo(HaveOccurred())
	target, err := url.Parse(to)
	Expect(err).NotTo(HaveOccurred())
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hosts[from.Host] = target
}

func (g *gatewayRoutes) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	target, ok := g.hosts[r.URL.Host]
	g.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no gateway runs at %s in this test", r.URL.Host)
	}
	out := r.Clone(r.Context())
	out.URL.Scheme, out.URL.Host, out.Host = target.Scheme, target.Host, ""
	return http.DefaultTransport.RoundTrip(out)
}

// brokerServers are the NATS servers tests run for Brokers, by
// "namespace/name": the manager reaches no other (BrokerAddress).
var brokerServers sync.Map

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controllers")
}

var _ = BeforeSuite(func() {
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(),
		"KUBEBUILDER_ASSETS must name the envtest binaries: run the tests with `make test`")
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)
	SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)

	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	auditLog = configureAudit(testEnv)
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	managerCfg = managerIdentity()
	manager = startManager()
})

var _ = AfterSuite(func() {
	if manager != nil {
		manager.stop()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// The ServiceAccount `helm install patchbay charts/patchbay -n patchbay-system`
// runs the manager as.
const (
	chartNamespace      = "patchbay-system"
	chartServiceAccount = "patchbay"
)

// managerRole is config/rbac/role.yaml, generated from the RBAC markers.
func managerRole() *rbacv1.ClusterRole {
	b, err := os.ReadFile(filepath.Join("..", "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred())
	role := &rbacv1.ClusterRole{}
	Expect(yaml.UnmarshalStrict(b, role)).To(Succeed())
	return role
}

// managerIdentity binds config/rbac/role.yaml to the chart's ServiceAccount,
// as the chart's ClusterRoleBinding does, and returns a config that
// impersonates it.
func managerIdentity() *rest.Config {
	role := managerRole()
	Expect(k8s.Create(context.Background(), role)).To(Succeed())
	Expect(k8s.Create(context.Background(), &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "patchbay-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: chartNamespace, Name: chartServiceAccount}},
	})).To(Succeed())
	return impersonating(chartNamespace, chartServiceAccount)
}

// impersonating is the suite's admin config acting as a ServiceAccount; the
// API server authorizes its requests as that ServiceAccount's.
func impersonating(namespace, serviceAccount string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{UserName: serviceAccountUser(namespace, serviceAccount)}
	return c
}

func serviceAccountUser(namespace, serviceAccount string) string {
	return "system:serviceaccount:" + namespace + ":" + serviceAccount
}

// runningManager is a started manager and what its requests wrote.
type runningManager struct {
	cancel   context.CancelFunc
	done     chan error
	requests *managertest.Requests
}

// startManager starts a manager as main.go does, as the chart's
// ServiceAccount, with every request it makes to the API server counted.
func startManager() *runningManager {
	return startManagerWith(managerCfg, testOptions)
}

// startManagerWith starts a manager with opts as the identity of restCfg.
func startManagerWith(restCfg *rest.Config, opts controllers.Options) *runningManager {
	// The suite restarts the manager in the same process.
	mgr, requests, err := managertest.NewManager(restCfg, scheme, opts.CacheOptions(), 0)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	Expect(controllers.SetupAll(ctx, mgr, opts)).To(Succeed())
	m := &runningManager{cancel: cancel, done: make(chan error, 1), requests: requests}
	go func() {
		defer GinkgoRecover()
		m.done <- mgr.Start(ctx)
	}()
	return m
}

func (m *runningManager) stop() {
	m.cancel()
	Eventually(m.done).Should(Receive(BeNil()))
}

// reconciles is how many reconciles a controller has finished, and whether
// its queue is drained with no worker busy.
func reconciles(controller string) (total float64, idle bool) {
	total, idle, err := managertest.Reconciles(controller)
	Expect(err).NotTo(HaveOccurred())
	return total, idle
}

// newNamespace creates a namespace for one test.
func newNamespace(prefix string, labels map[string]string) string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-", Labels: labels}}
	Expect(k8s.Create(context.Background(), ns)).To(Succeed())
	return ns.Name
}

// readSample decodes a manifest of config/samples.
func readSample(file string, out client.Object) {
	b, err := os.ReadFile(filepath.Join("..", "config", "samples", file))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.UnmarshalStrict(b, out)).To(Succeed(), file)
}

// markWorkloadsReady reports every Deployment and StatefulSet of the namespace
// ready, as kube-controller-manager would once their pods run.
func markWorkloadsReady(ctx context.Context, ns string) {
	var deps appsv1.DeploymentList
	Expect(k8s.List(ctx, &deps, client.InNamespace(ns))).To(Succeed())
	for i := range deps.Items {
		// The manager may change a Deployment meanwhile: mark what it holds now.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			d := &appsv1.Deployment{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(&deps.Items[i]), d); err != nil {
				return err
			}
			n := ptr.Deref(d.Spec.Replicas, 1)
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
			return k8s.Status().Update(ctx, d)
		})).To(Succeed())
	}
	var sets appsv1.StatefulSetList
	Expect(k8s.List(ctx, &sets, client.InNamespace(ns))).To(Succeed())
	for i := range sets.Items {
		s := &sets.Items[i]
		n := ptr.Deref(s.Spec.Replicas, 1)
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: s.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n, CurrentReplicas: n}
		Expect(k8s.Status().Update(ctx, s)).To(Succeed())
	}
}

// condition returns a condition of a Workflow or Broker as "Status/Reason: message".
func condition(conds []metav1.Condition, typ string) string {
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		return ""
	}
	return string(c.Status) + "/" + c.Reason + ": " + c.Message
}

// workflowCondition polls a Workflow's condition.
func workflowCondition(ctx context.Context, ns, name, typ string) func() string {
	return func() string {
		var wf v1alpha1.Workflow
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &wf); err != nil {
			return err.Error()
		}
		return condition(wf.Status.Conditions, typ)
	}
}

// childNames lists "Kind/name" of every object of a Workflow in a namespace.
func childNames(ctx context.Context, ns, workflow string) []string {
	var names []string
	for name := range labelledObjects(ctx, ns, client.MatchingLabels{"patchbay.dev/workflow": workflow}) {
		names = append(names, name)
	}
	return names
}

// labelledObjects are the objects of every kind a Workflow or Broker has
// children of that carry the labels, by "Kind/name".
func labelledObjects(ctx context.Context, ns string, sel client.MatchingLabels) map[string]client.Object {
	objs := map[string]client.Object{}
	for _, l := range []client.ObjectList{
		&corev1.ConfigMapList{}, &corev1.SecretList{}, &corev1.ServiceList{}, &appsv1.DeploymentList{}, &appsv1.StatefulSetList{},
		&networkingv1.NetworkPolicyList{}, &policyv1.PodDisruptionBudgetList{},
	} {
		Expect(k8s.List(ctx, l, client.InNamespace(ns), sel)).To(Succeed())
		items, err := meta.ExtractList(l)
		Expect(err).NotTo(HaveOccurred())
		for _, it := range items {
			o := it.(client.Object)
			kinds, _, err := scheme.ObjectKinds(o)
			Expect(err).NotTo(HaveOccurred())
			objs[kinds[0].Kind+"/"+o.GetName()] = o
		}
	}
	return objs
}

// prefixed makes "Kind/name" entries from kinds and names.
func prefixed(kind string, names ...string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = kind + "/" + n
	}
	return out
}
