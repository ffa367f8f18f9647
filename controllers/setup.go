package controllers

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// Default images. The runtime's tag is the manager's own version, so that a
// manager and the data plane it deploys match.
const (
	DefaultRuntimeRepository = "ghcr.io/patchbay-dev/patchbay-runtime"
	DefaultNATSImage         = "nats:2.12-alpine"
	// DefaultComponentReplicas runs two orchestrator and gateway pods: both are
	// stateless, so a second one makes a restart or a drain invisible to callers.
	DefaultComponentReplicas = int32(2)
	// DefaultWorkflowConcurrency is how many Workflows are reconciled at once.
	// A reconcile mostly waits for the API server, so a few in flight converge
	// many Workflows several times faster at the same cost per Workflow.
	DefaultWorkflowConcurrency = 4
)

// Options configure the controllers.
type Options struct {
	// RuntimeImage is the patchbay-runtime image of sidecars, orchestrators and gateways.
	RuntimeImage string
	// NATSImage is the NATS server image of Brokers that do not name one.
	NATSImage string
	// ComponentReplicas is the number of orchestrator and gateway pods of a Workflow.
	ComponentReplicas int32
	// WorkflowConcurrency is how many Workflows are reconciled at once.
	WorkflowConcurrency int
	// Clock is the clock of a style switch's drain periods; nil is the wall
	// clock. Tests move it past a drain period instead of waiting for it.
	Clock func() time.Time
	// BrokerAddress is where the manager reaches a Broker's NATS servers to
	// clean up after Workflows; nil means the Broker's status.url, its
	// Service. Tests point it at a server of their own.
	BrokerAddress func(*v1alpha1.Broker) string
	// WatchNamespaces are the only namespaces whose Workflows and Brokers the
	// manager reconciles and whose objects it reads; empty means every
	// namespace. With them, the manager needs a Role in each of them and no
	// ClusterRole (docs/security.md).
	WatchNamespaces []string
	// GatewayTransport is how the manager reaches the gateways' Services to
	// ask how far their read models are behind (ReadModelCurrent); nil is
	// plain HTTP. Tests route it to the gateways they run.
	GatewayTransport http.RoundTripper
}

// DefaultOptions are the options of a manager at version, such as v0.1.0.
func DefaultOptions(version string) Options {
	return Options{
		RuntimeImage:        DefaultRuntimeRepository + ":" + version,
		NATSImage:           DefaultNATSImage,
		ComponentReplicas:   DefaultComponentReplicas,
		WorkflowConcurrency: DefaultWorkflowConcurrency,
	}
}

// BindFlags registers --runtime-image, --nats-image, --component-replicas,
// --workflow-concurrency and --watch-namespaces.
// The environment (PATCHBAY_RUNTIME_IMAGE, PATCHBAY_NATS_IMAGE,
// PATCHBAY_WATCH_NAMESPACES) overrides the defaults already in o, and a flag
// overrides both.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	if v := os.Getenv("PATCHBAY_RUNTIME_IMAGE"); v != "" {
		o.RuntimeImage = v
	}
	if v := os.Getenv("PATCHBAY_NATS_IMAGE"); v != "" {
		o.NATSImage = v
	}
	if v := os.Getenv("PATCHBAY_WATCH_NAMESPACES"); v != "" {
		o.WatchNamespaces = splitNamespaces(v)
	}
	fs.StringVar(&o.RuntimeImage, "runtime-image", o.RuntimeImage, "patchbay-runtime image of sidecars, orchestrators and gateways; it holds /patchbay-runtime and /patchbay-sidecar, which the sidecars run (env PATCHBAY_RUNTIME_IMAGE)")
	fs.StringVar(&o.NATSImage, "nats-image", o.NATSImage, "NATS server image of Brokers that do not set spec.image (env PATCHBAY_NATS_IMAGE)")
	fs.Func("component-replicas", fmt.Sprintf("number of orchestrator and gateway pods per Workflow (default %d)", o.ComponentReplicas), func(s string) error {
		var n int32
		if _, err := fmt.Sscan(s, &n); err != nil {
			return err
		}
		o.ComponentReplicas = n
		return nil
	})
	fs.IntVar(&o.WorkflowConcurrency, "workflow-concurrency", o.WorkflowConcurrency, "number of Workflows reconciled at once")
	fs.Func("watch-namespaces", "comma-separated namespaces whose Workflows and Brokers the manager reconciles; empty means every namespace (env PATCHBAY_WATCH_NAMESPACES)", func(s string) error {
		o.WatchNamespaces = splitNamespaces(s)
		return nil
	})
}

// splitNamespaces splits a comma-separated list, dropping the spaces around
// its items; Validate refuses an empty item.
func splitNamespaces(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = strings.TrimSpace(p)
	}
	return parts
}

// Validate reports every option that cannot work, naming it.
func (o Options) Validate() error {
	var errs []error
	if o.RuntimeImage == "" {
		errs = append(errs, errors.New("the runtime image is empty"))
	}
	if o.NATSImage == "" {
		errs = append(errs, errors.New("the NATS image is empty"))
	}
	if o.ComponentReplicas < 1 {
		errs = append(errs, fmt.Errorf("component replicas must be at least 1, not %d", o.ComponentReplicas))
	}
	if o.WorkflowConcurrency < 1 {
		errs = append(errs, fmt.Errorf("workflow concurrency must be at least 1, not %d", o.WorkflowConcurrency))
	}
	for i, ns := range o.WatchNamespaces {
		if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("watch namespace %q: %s", ns, strings.Join(msgs, "; ")))
		}
		if slices.Contains(o.WatchNamespaces[:i], ns) {
			errs = append(errs, fmt.Errorf("watch namespace %q is listed twice", ns))
		}
	}
	return errors.Join(errs...)
}

// SetupAll registers the Workflow and Broker controllers with mgr.
func SetupAll(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("controller options: %w", err)
	}
	if err := indexChildren(ctx, mgr); err != nil {
		return err
	}
	settings := render.Settings{RuntimeImage: opts.RuntimeImage, NATSImage: opts.NATSImage, ComponentReplicas: opts.ComponentReplicas}
	a := applier{client: mgr.GetClient(), reader: mgr.GetAPIReader()}
	admin := newNATSAdmin(opts.BrokerAddress)
	secrets, err := newStepSecrets(mgr, opts)
	if err != nil {
		return err
	}
	wr := &WorkflowReconciler{
		client:      mgr.GetClient(),
		applier:     a,
		recorder:    mgr.GetEventRecorder("patchbay-workflow"),
		settings:    settings,
		compile:     topology.Compile,
		admin:       admin,
		secrets:     secrets,
		concurrency: opts.WorkflowConcurrency,
		clock:       opts.Clock,
		gateways:    &http.Client{Transport: opts.GatewayTransport, Timeout: readModelAskTimeout},
	}
	if err := wr.SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("set up the Workflow controller: %w", err)
	}
	br := &BrokerReconciler{client: mgr.GetClient(), applier: a, settings: settings, admin: admin}
	if err := br.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up the Broker controller: %w", err)
	}
	return nil
}

// CacheOptions limit the manager's cache to the watched namespaces (all when
// o.WatchNamespaces is empty), and its cache of child kinds to the objects
// patchbay manages, so that it does not hold every Secret, ConfigMap and
// Deployment of the cluster. Names held by other objects are still found: a
// child the cache lacks is created only if its name is free (applier.create).
// The cache must keep managedFields (no TransformStripManagedFields): an
// unchanged child is recognised by the fields patchbay owns.
func (o Options) CacheOptions() cache.Options {
	managed := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedBy})}
	byObject := map[client.Object]cache.ByObject{}
	for _, k := range childKinds {
		byObject[k.newObject()] = managed
	}
	return cache.Options{ByObject: byObject, DefaultNamespaces: o.namespaces()}
}

// namespaces are the watched namespaces as the cache takes them; nil means all.
func (o Options) namespaces() map[string]cache.Config {
	if len(o.WatchNamespaces) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(o.WatchNamespaces))
	for _, ns := range o.WatchNamespaces {
		m[ns] = cache.Config{}
	}
	return m
}
