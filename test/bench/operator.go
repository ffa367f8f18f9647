package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/controllers"
	"github.com/patchbay-dev/patchbay/internal/managertest"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// operatorConfig is the size of the operator benchmark.
type operatorConfig struct {
	workflows int
	// workers is both the manager's --workflow-concurrency and the number of
	// goroutines the plain client creates objects with, so that both sides
	// have the same parallelism (by default the manager's default).
	workers int
	sample  string        // a Workflow manifest, copied workflows times
	settle  time.Duration // how long a restarted manager must stay idle
	// applyBaseline adds a plain client that server-side applies the
	// children instead of creating them, to tell the cost of apply apart.
	applyBaseline bool
}

var operatorOptions = controllers.DefaultOptions("bench")

// runOperator times the manager converging workflows Workflows against the
// time a plain client needs to create the same objects, each on a fresh
// envtest API server, then restarts the manager and counts its writes.
func runOperator(ctx context.Context, cfg operatorConfig, rep *report) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS must name the envtest binaries (make bench sets it)")
	}
	ctrl.SetLogger(logrDiscard())
	operatorOptions.WorkflowConcurrency = cfg.workers
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	var sample v1alpha1.Workflow
	b, err := os.ReadFile(cfg.sample)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(b, &sample); err != nil {
		return fmt.Errorf("%s: %w", cfg.sample, err)
	}

	fmt.Printf("Operator: plain client creates %d Workflows and their rendered children (%d workers)\n", cfg.workflows, cfg.workers)
	var plain, plainCPU, managerCPU, plainSelfCPU, plainAPICPU, managerSelfCPU, managerAPICPU time.Duration
	var plainObjects int64
	err = withEnvtest(func(restCfg *rest.Config) error {
		c, err := client.New(restCfg, client.Options{Scheme: scheme})
		if err != nil {
			return err
		}
		ns, err := createNamespace(ctx, c, "plain")
		if err != nil {
			return err
		}
		start, self0, api0 := time.Now(), selfCPU(), childrenCPU()
		plainObjects, err = createPlain(ctx, c, &sample, ns, cfg, false)
		plain = time.Since(start)
		plainSelfCPU, plainAPICPU = selfCPU()-self0, childrenCPU()-api0
		plainCPU = plainSelfCPU + plainAPICPU
		if err != nil || !cfg.applyBaseline {
			return err
		}
		fmt.Printf("  %d objects in %s\n", plainObjects, plain.Round(time.Millisecond))
		fmt.Println("Operator: the plain client again in a new namespace, server-side applying the children")
		ns, err = createNamespace(ctx, c, "plain-apply")
		if err != nil {
			return err
		}
		start, self0, api0 = time.Now(), selfCPU(), childrenCPU()
		n, err := createPlain(ctx, c, &sample, ns, cfg, true)
		d, selfC, apiC := time.Since(start), selfCPU()-self0, childrenCPU()-api0
		if err != nil {
			return err
		}
		fmt.Printf("  %d objects in %s\n", n, d.Round(time.Millisecond))
		rep.add(row{Section: "operator", Target: "plain client, children server-side applied (same API server, second)",
			Baseline: fmt.Sprintf("plain create %.1fs", plain.Seconds()), Measured: fmt.Sprintf("%.1fs (%d obj)", d.Seconds(), n),
			Ratio: fmt.Sprintf("%.2f", d.Seconds()/plain.Seconds()),
			CPU:   fmt.Sprintf("%s client / %s API server", cpuPer(selfC, int64(cfg.workflows), "Workflow"), cpuPer(apiC, int64(cfg.workflows), "Workflow"))})
		return nil
	})
	if err != nil {
		return err
	}
	if !cfg.applyBaseline {
		fmt.Printf("  %d objects in %s\n", plainObjects, plain.Round(time.Millisecond))
	}

	fmt.Printf("Operator: the manager converges %d Workflows (--workflow-concurrency %d)\n", cfg.workflows, cfg.workers)
	var converge, resync, restartCPU time.Duration
	var convergeReconciles float64
	var convergeWrites, restartWrites []string
	var convergeReads int
	var managedObjects int64
	err = withEnvtest(func(restCfg *rest.Config) error {
		c, err := client.New(restCfg, client.Options{Scheme: scheme})
		if err != nil {
			return err
		}
		ns, err := createNamespace(ctx, c, "managed")
		if err != nil {
			return err
		}
		m, err := startManager(restCfg, scheme, cfg.workers)
		if err != nil {
			return err
		}
		base, _ := reconciles()
		start, self0, api0 := time.Now(), selfCPU(), childrenCPU()
		if _, err := createWorkflows(ctx, c, &sample, ns, cfg); err != nil {
			m.stop()
			return err
		}
		err = waitConverged(ctx, c, ns, cfg.workflows, base)
		converge = time.Since(start)
		after, _ := reconciles()
		convergeReconciles = after - base
		managerSelfCPU, managerAPICPU = selfCPU()-self0, childrenCPU()-api0
		managerCPU = managerSelfCPU + managerAPICPU
		convergeWrites, convergeReads = m.requests.Writes(), apiReads(m.requests)
		m.stop()
		if err != nil {
			return err
		}
		if managedObjects, err = countChildren(ctx, c, ns); err != nil {
			return err
		}
		fmt.Printf("  converged in %s, %d children; the manager sent %d writes and %d reads (not counting watches)\n",
			converge.Round(time.Millisecond), managedObjects, len(convergeWrites), convergeReads)

		fmt.Println("Operator: restart the manager on the converged namespace")
		m, err = startManager(restCfg, scheme, cfg.workers)
		if err != nil {
			return err
		}
		defer m.stop()
		base, _ = reconciles()
		start, cpu0 := time.Now(), selfCPU()+childrenCPU()
		if err := waitIdle(ctx, base+float64(cfg.workflows), cfg.settle); err != nil {
			return err
		}
		restartCPU = selfCPU() + childrenCPU() - cpu0
		resync = time.Since(start) - cfg.settle
		restartWrites = m.requests.Writes()
		fmt.Printf("  resynced in %s, %d writes\n", resync.Round(time.Millisecond), len(restartWrites))
		return nil
	})
	if err != nil {
		return err
	}

	ratio := converge.Seconds() / plain.Seconds()
	rep.check("operator", fmt.Sprintf("%d Workflows converge ≤ 1.5× plain create", cfg.workflows),
		fmt.Sprintf("plain %.1fs (%d obj)", plain.Seconds(), plainObjects),
		fmt.Sprintf("manager %.1fs (%d obj; %d writes, %d reads)", converge.Seconds(), managedObjects+int64(cfg.workflows), len(convergeWrites), convergeReads),
		fmt.Sprintf("%.2f", ratio),
		fmt.Sprintf("%s (plain %s)", cpuPer(managerCPU, int64(cfg.workflows), "Workflow"), cpuPer(plainCPU, int64(cfg.workflows), "Workflow")),
		ratio <= 1.5 && managedObjects+int64(cfg.workflows) == plainObjects)
	rep.check("operator", "restart of a converged manager: 0 writes", "0",
		fmt.Sprintf("%d writes (resync %.1fs)", len(restartWrites), resync.Seconds()), "-",
		cpuPer(restartCPU, int64(cfg.workflows), "Workflow"), len(restartWrites) == 0)
	rep.notef("operator: the manager's writes while converging: %s", byResource(convergeWrites))
	rep.notef("operator: the manager reconciled each Workflow %.2f times on average while converging", convergeReconciles/float64(cfg.workflows))
	rep.notef("operator: CPU per Workflow, client or manager side / kube-apiserver + etcd side: plain %s / %s, manager %s / %s",
		cpuPer(plainSelfCPU, int64(cfg.workflows), "Workflow"), cpuPer(plainAPICPU, int64(cfg.workflows), "Workflow"),
		cpuPer(managerSelfCPU, int64(cfg.workflows), "Workflow"), cpuPer(managerAPICPU, int64(cfg.workflows), "Workflow"))
	if n := len(restartWrites); n > 0 {
		rep.notef("operator: writes after restart, first: %v", restartWrites[:min(n, 5)])
	}
	rep.notef("operator: %d copies of %s on envtest, %d workers on each side (kube-apiserver + etcd, no client-side rate limit), a fresh API server for each side; CPU is this process's (client or manager) plus the API server's and etcd's, per Workflow; objects count the Workflows; the plain client creates each Workflow, then its children as internal/render renders them",
		cfg.workflows, filepath.Base(cfg.sample), cfg.workers)
	return nil
}

// withEnvtest runs f against a fresh API server with patchbay's CRDs.
func withEnvtest(f func(*rest.Config) error) error {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	// envtest's default range holds 256 Service IPs; 1000 Workflows need 5000.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start envtest: %w", err)
	}
	// The manager in a cluster has no client-side rate limit (controller-runtime's default).
	cfg.QPS, cfg.Burst = -1, 0
	err = f(cfg)
	return errors.Join(err, env.Stop())
}

func createNamespace(ctx context.Context, c client.Client, name string) (string, error) {
	return name, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}

// workflowCopy is the i-th copy of the sample in ns.
func workflowCopy(sample *v1alpha1.Workflow, ns string, i int) *v1alpha1.Workflow {
	wf := sample.DeepCopy()
	wf.Namespace = ns
	wf.Name = fmt.Sprintf("%s-%04d", sample.Name, i)
	return wf
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return cmpOr(first, ctx.Err())
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// createPlain is the baseline: what a client that knows the result needs to
// do, creating every Workflow and every child the controller would apply.
func createPlain(ctx context.Context, c client.Client, sample *v1alpha1.Workflow, ns string, cfg operatorConfig, apply bool) (int64, error) {
	settings := render.Settings{RuntimeImage: operatorOptions.RuntimeImage, NATSImage: operatorOptions.NATSImage, ComponentReplicas: operatorOptions.ComponentReplicas}
	var objects atomic.Int64
	err := parallel(ctx, cfg.workflows, cfg.workers, func(i int) error {
		wf := workflowCopy(sample, ns, i)
		if err := c.Create(ctx, wf); err != nil {
			return err
		}
		objects.Add(1)
		p, err := topology.Compile(wf)
		if err != nil {
			return err
		}
		in, err := render.NewWorkflowInput(wf, p, settings)
		if err != nil {
			return err
		}
		for _, obj := range render.WorkflowObjects(in) {
			write := func() error { return c.Create(ctx, obj) }
			if apply {
				write = func() error { // as the manager applies
					u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
					if err != nil {
						return err
					}
					return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: u}), client.FieldOwner("bench"), client.ForceOwnership)
				}
			}
			if err := write(); err != nil {
				return fmt.Errorf("create %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
			}
			objects.Add(1)
		}
		return nil
	})
	return objects.Load(), err
}

func createWorkflows(ctx context.Context, c client.Client, sample *v1alpha1.Workflow, ns string, cfg operatorConfig) (int64, error) {
	var objects atomic.Int64
	err := parallel(ctx, cfg.workflows, cfg.workers, func(i int) error {
		objects.Add(1)
		return c.Create(ctx, workflowCopy(sample, ns, i))
	})
	return objects.Load(), err
}

// waitConverged waits until every Workflow of ns reports its generation as
// observed. It lists them only when the controller has reconciled at least
// as many times as there are Workflows and its queue is empty, so that the
// polling costs the API server little.
func waitConverged(ctx context.Context, c client.Client, ns string, n int, base float64) error {
	deadline := time.Now().Add(time.Duration(n)*time.Second + 2*time.Minute)
	for {
		total, idle := reconciles()
		if total-base >= float64(n) && idle {
			var list v1alpha1.WorkflowList
			if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			done := 0
			for _, wf := range list.Items {
				if wf.Status.ObservedGeneration == wf.Generation {
					done++
				}
			}
			if done == n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d Workflows did not converge in time", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitIdle waits until the controller has reconciled want times in total and
// then stayed idle for settle.
func waitIdle(ctx context.Context, want float64, settle time.Duration) error {
	deadline := time.Now().Add(10 * time.Minute)
	var idleSince time.Time
	for {
		total, idle := reconciles()
		switch {
		case total < want || !idle:
			idleSince = time.Time{}
		case idleSince.IsZero():
			idleSince = time.Now()
		case time.Since(idleSince) >= settle:
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the restarted manager did not settle in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// countChildren counts the children of every kind a Workflow has in ns.
func countChildren(ctx context.Context, c client.Client, ns string) (int64, error) {
	var n int64
	for _, l := range []client.ObjectList{&corev1.ConfigMapList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{}, &networkingv1.NetworkPolicyList{}, &policyv1.PodDisruptionBudgetList{}} {
		if err := c.List(ctx, l, client.InNamespace(ns), client.MatchingLabels{render.LabelManagedBy: render.ManagedBy}); err != nil {
			return 0, err
		}
		n += int64(meta.LenList(l))
	}
	return n, nil
}

// byResource counts requests such as "PATCH /api/v1/namespaces/ns/services/x"
// by method and resource: "PATCH services 5000, ...".
func byResource(requests []string) string {
	counts := map[string]int{}
	for _, r := range requests {
		method, path, _ := strings.Cut(r, " ")
		parts := strings.Split(strings.Trim(path, "/"), "/")
		resource := path
		for i, p := range parts {
			if p == "namespaces" && i+2 < len(parts) {
				resource = strings.Join(parts[i+2:min(i+3, len(parts))], "/")
				if i+4 < len(parts) {
					resource += "/" + parts[i+4] // a subresource such as status
				}
			}
		}
		counts[method+" "+resource]++
	}
	keys := slices.Sorted(maps.Keys(counts))
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s %d", k, counts[k])
	}
	return strings.Join(out, ", ")
}

// runningManager is a started manager and the writes it sent.
type runningManager struct {
	cancel   context.CancelFunc
	done     chan error
	requests *managertest.Requests
}

// startManager starts the manager as main.go does, with every request that
// may write counted.
func startManager(restCfg *rest.Config, scheme *runtime.Scheme, workers int) (*runningManager, error) {
	// The benchmark restarts the manager in the same process.
	mgr, requests, err := managertest.NewManager(restCfg, scheme, operatorOptions.CacheOptions(), workers)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := controllers.SetupAll(ctx, mgr, operatorOptions); err != nil {
		cancel()
		return nil, err
	}
	m := &runningManager{cancel: cancel, done: make(chan error, 1), requests: requests}
	go func() { m.done <- mgr.Start(ctx) }()
	return m, nil
}

// stop stops the manager and waits for it. An error it ended with is printed:
// what was measured before it stays measured.
func (m *runningManager) stop() {
	m.cancel()
	if err := <-m.done; err != nil {
		fmt.Printf("  the manager ended with an error: %v\n", err)
	}
}

// reconciles is how many reconciles the Workflow controller has finished in
// this process, and whether its queue is drained with no worker busy.
func reconciles() (total float64, idle bool) {
	total, idle, err := managertest.Reconciles("workflow")
	if err != nil {
		return 0, false
	}
	return total, idle
}

// apiReads is how many of the GETs q recorded are not watches.
func apiReads(q *managertest.Requests) int {
	n := 0
	for _, r := range q.Reads() {
		_, query, _ := strings.Cut(r, "?")
		if v, _ := url.ParseQuery(query); v.Get("watch") == "" {
			n++
		}
	}
	return n
}
