package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// brokerIndex indexes the Workflows whose style needs a Broker by its name, so
// that a Broker's events reach the Workflows that wait for it.
const brokerIndex = "patchbay.dev/broker"

// nameConflictRetry is how often a Workflow whose child name is taken looks
// again: the holder is not ours, so its deletion brings no event.
const nameConflictRetry = time.Minute

// +kubebuilder:rbac:groups=patchbay.dev,resources=workflows,verbs=list;watch;patch
// +kubebuilder:rbac:groups=patchbay.dev,resources=workflows/status,verbs=patch
// +kubebuilder:rbac:groups=patchbay.dev,resources=workflows/finalizers,verbs=update
// +kubebuilder:rbac:groups=patchbay.dev,resources=brokers,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=configmaps;services;secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// WorkflowReconciler compiles a Workflow into a Plan and applies the children
// rendered from it.
type WorkflowReconciler struct {
	client   client.Client
	applier  applier
	recorder recorder.EventRecorder
	settings render.Settings
	compile  func(*v1alpha1.Workflow) (*plan.Plan, error)
	// admin talks to the Brokers, to clean up after Workflows.
	admin *natsAdmin
	// secrets decides which Secrets steps may read.
	secrets *stepSecrets
	// gateways asks the gateways how far their read models are behind.
	gateways *http.Client
	// concurrency is how many Workflows are reconciled at once. Two that want
	// the same child name may race: only one create makes it.
	concurrency int
	// clock is the clock of the drain periods of a style switch; nil is the wall clock.
	clock func() time.Time
}

// workflowScope is what the phases of one reconcile share.
type workflowScope struct {
	wf *v1alpha1.Workflow
	// before is the Workflow as read, the base of the status patch.
	before *v1alpha1.Workflow

	plan       *plan.Plan
	compileErr error
	input      *render.WorkflowInput
	broker     brokerState
	// secrets is the check of the steps' Secret references; nil if it failed.
	secrets *secretCheck

	// desired holds every child rendered, applied or not; the others are pruned.
	desired    map[childKey]bool
	nameErrors []*nameError
	// applyErrors are the children the API server refused, for the status.
	applyErrors []error
	// readiness is what observeDeployments found of the current style's Deployments.
	readiness workloadReadiness
	// switching is what switchStyles found; nil when it did not run.
	switching *switchState
	created   []childKey
	updated   []childKey
	deleted   []childKey
	failed    bool
}

func (r *WorkflowReconciler) phases() []phase[*workflowScope] {
	return []phase[*workflowScope]{
		{"broker", r.lookupBroker},
		{"finalizer", r.ensureFinalizer},
		{"compile", r.compileWorkflow},
		{"secret references", r.checkSecrets},
		{"credentials", r.resolveCredentials},
		{"broker resources", r.ensureBrokerResources},
		{"plan ConfigMap", r.applyPlanConfigMap},
		{"steps", r.applySteps},
		{"orchestrator and gateway", r.applyComponents},
		{"network policies", r.applyNetworkPolicies},
		{"disruption budgets", r.applyDisruptionBudgets},
		{"observe", r.observeDeployments},
		{"switch", r.switchStyles},
		{"prune", r.pruneChildren},
		{"status", r.writeStatus},
	}
}

// Reconcile runs the phases for one Workflow. A deleted Workflow's children
// carry owner references and go with it; what it holds on its Broker is
// deleted by finalize first.
func (r *WorkflowReconciler) Reconcile(ctx context.Context, req reconcile.Request) (ctrl.Result, error) {
	wf := &v1alpha1.Workflow{}
	if err := r.client.Get(ctx, req.NamespacedName, wf); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !wf.DeletionTimestamp.IsZero() {
		return r.finalize(ctx, wf)
	}
	s := &workflowScope{wf: wf, before: wf.DeepCopy(), desired: map[childKey]bool{}}
	return runPhases(ctx, s, &s.failed, r.phases())
}

// compileWorkflow turns the spec into a plan, and the plan and the Broker into
// the render input. A spec the compiler refuses is reported in Compiled and not
// retried: only a new spec can change the answer. The children of the last
// good plan stay as they are.
func (r *WorkflowReconciler) compileWorkflow(_ context.Context, s *workflowScope) (ctrl.Result, error) {
	p, err := r.compile(s.wf)
	if err != nil {
		s.compileErr = err
		return ctrl.Result{}, nil //nolint:nilerr // reported in Compiled, and not retried
	}
	in, err := render.NewWorkflowInput(s.wf, p, r.settings)
	if err != nil {
		return ctrl.Result{}, err
	}
	if s.broker.broker != nil {
		in.Streams = render.BrokerStreams(s.broker.broker)
	}
	s.plan, s.input = p, in
	return ctrl.Result{}, nil
}

// lookupBroker finds the Broker an async style needs. A missing Broker does
// not hold the children back; Workflows are requeued when it appears, and
// when it changes, as their pods store their streams the way it does.
func (r *WorkflowReconciler) lookupBroker(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	s.broker = brokerState{needed: s.wf.Spec.Style.IsAsync(), name: s.wf.BrokerName()}
	if !s.broker.needed {
		return ctrl.Result{}, nil
	}
	b := &v1alpha1.Broker{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: s.wf.Namespace, Name: s.broker.name}, b)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("get Broker %s: %w", s.broker.name, err)
	case !b.DeletionTimestamp.IsZero():
		s.broker.deleting = true
	default:
		s.broker.broker = b
	}
	return ctrl.Result{}, nil
}

func (r *WorkflowReconciler) applyPlanConfigMap(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.applyChildren(ctx, s, render.PlanConfigMap(s.input))
}

// checkSecrets decides every Secret reference of the steps, and finds the
// Deployments that the steps with a refused one keep.
func (r *WorkflowReconciler) checkSecrets(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	c, err := r.secrets.check(ctx, s.wf)
	if err != nil {
		return ctrl.Result{}, err
	}
	for st := range c.refusedSteps() {
		name := plan.ChildName(s.wf.Name, s.wf.Spec.Style, st)
		d := &appsv1.Deployment{}
		err := r.client.Get(ctx, types.NamespacedName{Namespace: s.wf.Namespace, Name: name}, d)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return ctrl.Result{}, fmt.Errorf("get Deployment %s: %w", name, err)
		case metav1.IsControlledBy(d, s.wf):
			c.kept[st] = name
		}
	}
	s.secrets = c
	return ctrl.Result{}, nil
}

// applySteps applies every step's Deployment and Service, but no Deployment
// that would read a Secret the steps may not read: a step with a refused
// reference keeps the Deployment it has, which stays desired and is not
// pruned. When the references could not be checked, no step that reads a
// Secret is updated.
func (r *WorkflowReconciler) applySteps(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	held := map[childKey]bool{}
	if s.secrets != nil {
		for st := range s.secrets.refusedSteps() {
			held[childKey{kind: "Deployment", name: plan.ChildName(s.wf.Name, s.wf.Spec.Style, st)}] = true
		}
	} else {
		for _, ref := range stepSecretRefs(s.wf) {
			held[childKey{kind: "Deployment", name: plan.ChildName(s.wf.Name, s.wf.Spec.Style, ref.step)}] = true
		}
	}
	var objs []client.Object
	for _, o := range render.StepObjects(s.input) {
		if held[keyOf(o)] {
			s.desired[keyOf(o)] = true
			continue
		}
		objs = append(objs, o)
	}
	return ctrl.Result{}, r.applyChildren(ctx, s, objs...)
}

func (r *WorkflowReconciler) applyComponents(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.applyChildren(ctx, s, render.ComponentObjects(s.input)...)
}

func (r *WorkflowReconciler) applyNetworkPolicies(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.applyChildren(ctx, s, render.NetworkPolicies(s.input)...)
}

func (r *WorkflowReconciler) applyDisruptionBudgets(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.applyChildren(ctx, s, render.DisruptionBudgets(s.input)...)
}

// applyChildren applies each object, remembering it as desired; names it
// cannot take are collected for the status, not returned as errors.
func (r *WorkflowReconciler) applyChildren(ctx context.Context, s *workflowScope, objs ...client.Object) error {
	var errs []error
	for _, o := range objs {
		key := keyOf(o)
		s.desired[key] = true
		outcome, err := r.applier.apply(ctx, s.wf, o)
		var nerr *nameError
		switch {
		case errors.As(err, &nerr):
			s.nameErrors = append(s.nameErrors, nerr)
		case err != nil:
			errs = append(errs, err)
			s.applyErrors = append(s.applyErrors, err)
		case outcome == created:
			s.created = append(s.created, key)
		case outcome == updated:
			s.updated = append(s.updated, key)
		}
	}
	return errors.Join(errs...)
}

// pruneChildren deletes the children the current plan no longer renders. It
// holds back unless every child was rendered and applied, so that a partial
// pass never deletes what is still needed.
func (r *WorkflowReconciler) pruneChildren(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil || s.failed {
		return ctrl.Result{}, nil
	}
	deleted, err := pruneChildren(ctx, r.client, s.wf, childKindsOf(ownedByWorkflow), client.MatchingLabels{render.LabelWorkflow: s.wf.Name}, s.desired)
	s.deleted = deleted
	return ctrl.Result{}, err
}

// writeStatus sets every condition, emits the events of this reconcile and
// patches the status once, and only if it changed.
func (r *WorkflowReconciler) writeStatus(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	wf := s.wf
	setCompiledCondition(wf, s.plan, s.compileErr)
	setBrokerReadyCondition(wf, s.broker)
	setSecretsAllowedCondition(wf, s.secrets)
	readiness := s.readiness
	readiness.compiled, readiness.nameErrors, readiness.applyErrors = s.plan != nil, s.nameErrors, s.applyErrors
	var readModel readModelState
	if s.plan != nil {
		wf.Status.Endpoint = plan.ServiceURL(wf.Namespace, s.plan.Entry.Service)
		wf.Status.PlanHash = s.input.PlanHash()
		if s.plan.ReadModel != nil {
			readModel = r.observeReadModel(ctx, s, readiness)
		}
	}
	setStepsReadyCondition(wf, readiness)
	setReadyCondition(wf)
	setSwitchingCondition(wf, s.switching)
	setStyleAdvisedCondition(wf)
	setReadModelCurrentCondition(wf, s.plan, readModel, time.Now())
	if !s.failed && s.compileErr == nil && len(s.nameErrors) == 0 && s.secrets != nil && len(s.secrets.refused) == 0 {
		wf.Status.ObservedGeneration = wf.Generation
	}
	r.emitEvents(s)

	var result ctrl.Result
	if len(s.nameErrors) > 0 {
		result.RequeueAfter = nameConflictRetry
	}
	if s.plan != nil && s.plan.ReadModel != nil {
		result.RequeueAfter = min(cmp.Or(result.RequeueAfter, readModelPoll), readModelPoll)
	}
	if equality.Semantic.DeepEqual(s.before.Status, wf.Status) {
		return result, nil
	}
	if err := r.client.Status().Patch(ctx, wf, client.MergeFrom(s.before), client.FieldOwner(FieldOwner)); err != nil {
		return result, fmt.Errorf("patch status: %w", err)
	}
	return result, nil
}

// observeDeployments reads the Deployments of the plan's steps and components
// into status.steps and the readiness of StepsReady, which a style switch
// waits for before it moves the entry.
func (r *WorkflowReconciler) observeDeployments(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.plan == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.observeDeploymentsOf(ctx, s, &s.readiness)
}

func (r *WorkflowReconciler) observeDeploymentsOf(ctx context.Context, s *workflowScope, readiness *workloadReadiness) error {
	wf := s.wf
	steps := make([]v1alpha1.StepStatus, 0, len(s.plan.Steps))
	readySteps := 0
	check := func(name string, replicas int32) (int32, error) {
		d := &appsv1.Deployment{}
		err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: name}, d)
		if client.IgnoreNotFound(err) != nil {
			return 0, fmt.Errorf("get Deployment %s: %w", name, err)
		}
		readiness.total++
		// A Deployment not found has no controller either.
		ref := metav1.GetControllerOf(d)
		if ref == nil || ref.UID != wf.UID {
			readiness.waiting = append(readiness.waiting, name)
			return 0, nil
		}
		if !deploymentReady(d, replicas) {
			readiness.waiting = append(readiness.waiting, name)
		}
		return d.Status.ReadyReplicas, nil
	}
	for _, st := range s.plan.Steps {
		name := plan.ChildName(wf.Name, wf.Spec.Style, st.Name)
		waiting := len(readiness.waiting)
		ready, err := check(name, st.Replicas)
		if err != nil {
			return err
		}
		if len(readiness.waiting) == waiting {
			readySteps++
		}
		steps = append(steps, v1alpha1.StepStatus{Name: st.Name, Replicas: st.Replicas, ReadyReplicas: ready})
	}
	for _, c := range render.Components(s.plan) {
		if _, err := check(plan.ChildName(wf.Name, wf.Spec.Style, c), r.settings.ComponentReplicas); err != nil {
			return err
		}
	}
	wf.Status.Steps = steps
	wf.Status.ReadySteps = fmt.Sprintf("%d/%d", readySteps, len(steps))
	return nil
}

// deploymentReady reports whether a Deployment runs the current template with
// all of the replicas the plan wants ready.
func deploymentReady(d *appsv1.Deployment, replicas int32) bool {
	if d.Spec.Replicas != nil && *d.Spec.Replicas != replicas {
		return false
	}
	st := d.Status
	return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas >= replicas && st.ReadyReplicas >= replicas
}

// emitEvents records what changed: a newly failed compile, a child name newly
// refused, and the children created, updated or deleted. A reconcile that
// changed nothing records nothing.
func (r *WorkflowReconciler) emitEvents(s *workflowScope) {
	conditionChanged := func(typ string) (*metav1.Condition, bool) {
		now := meta.FindStatusCondition(s.wf.Status.Conditions, typ)
		was := meta.FindStatusCondition(s.before.Status.Conditions, typ)
		return now, was == nil || was.Status != now.Status || was.Reason != now.Reason || was.Message != now.Message
	}
	if c, changed := conditionChanged(v1alpha1.ConditionCompiled); changed && c.Status == metav1.ConditionFalse {
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeWarning, c.Reason, "Compile", "%s", eventNote(c.Message))
	}
	if c, changed := conditionChanged(v1alpha1.ConditionSecretsAllowed); changed && c.Status == metav1.ConditionFalse {
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeWarning, c.Reason, "CheckSecrets", "%s", eventNote(c.Message))
	}
	if c, changed := conditionChanged(v1alpha1.ConditionStepsReady); changed && (len(s.nameErrors) > 0 || len(s.applyErrors) > 0) {
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeWarning, c.Reason, "Apply", "%s", eventNote(c.Message))
	}
	if sw := s.switching; sw != nil && sw.movedFrom != "" {
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeNormal, v1alpha1.ReasonEntryMoved, "Switch",
			"The entry moved from %s to %s; the earlier children drain before they are deleted", styleName(sw.movedFrom), s.wf.Spec.Style)
	}
	var parts []string
	for _, p := range []struct {
		verb string
		keys []childKey
	}{{"created", s.created}, {"updated", s.updated}, {"deleted", s.deleted}} {
		if len(p.keys) > 0 {
			names := make([]string, len(p.keys))
			for i, k := range p.keys {
				names[i] = k.String()
			}
			parts = append(parts, p.verb+" "+strings.Join(names, ", "))
		}
	}
	if len(parts) > 0 {
		note := fmt.Sprintf("Applied the %s topology (plan %s): %s", s.wf.Spec.Style, s.input.PlanHash(), strings.Join(parts, "; "))
		r.recorder.Eventf(s.wf, nil, corev1.EventTypeNormal, "TopologyChanged", "Apply", "%s", eventNote(note))
	}
}

// eventNote fits a message into an Event's note, which holds 1 KiB.
func eventNote(msg string) string {
	const maxNote = 1000
	if len(msg) <= maxNote {
		return msg
	}
	return msg[:maxNote] + "…"
}

// SetupWithManager watches Workflows, their children (so that drift is undone),
// Brokers (so that a Workflow waiting for one proceeds when it appears) and
// the Secrets labelled for steps (so that a label added or removed is acted on).
func (r *WorkflowReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Workflow{}, brokerIndex, func(o client.Object) []string {
		wf := o.(*v1alpha1.Workflow)
		// A Workflow that holds the cleanup finalizer waits for its Broker
		// even after a switch to a sync style.
		if !wf.Spec.Style.IsAsync() && !controllerutil.ContainsFinalizer(wf, BrokerCleanupFinalizer) {
			return nil
		}
		return []string{wf.BrokerName()}
	})
	if err != nil {
		return fmt.Errorf("index Workflows by Broker: %w", err)
	}
	err = mgr.GetFieldIndexer().IndexField(ctx, &v1alpha1.Workflow{}, secretIndex, func(o client.Object) []string {
		return referencedSecrets(o.(*v1alpha1.Workflow))
	})
	if err != nil {
		return fmt.Errorf("index Workflows by the Secrets they read: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("workflow").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.concurrency}).
		For(&v1alpha1.Workflow{}, builder.WithPredicates(predicate.GenerationChangedPredicate{}))
	return ownChildren(b, ownedByWorkflow).
		Watches(&v1alpha1.Broker{}, handler.EnqueueRequestsFromMapFunc(r.workflowsUsingBroker)).
		// A Broker's auth Secret, new or replaced, gives its Workflows new credentials.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.workflowsUsingBrokerSecret)).
		WatchesRawSource(r.secretSource()).
		Complete(r)
}

// workflowsUsingBroker maps a Broker to the Workflows in its namespace that use it.
func (r *WorkflowReconciler) workflowsUsingBroker(ctx context.Context, o client.Object) []reconcile.Request {
	return r.workflowsOf(ctx, o.GetNamespace(), o.GetName())
}

// workflowsUsingBrokerSecret maps a Broker's auth Secret to the Workflows
// that use the Broker.
func (r *WorkflowReconciler) workflowsUsingBrokerSecret(ctx context.Context, o client.Object) []reconcile.Request {
	broker := o.GetLabels()[render.LabelBroker]
	if broker == "" || o.GetName() != render.NATSAuthSecretName(broker) {
		return nil
	}
	return r.workflowsOf(ctx, o.GetNamespace(), broker)
}

func (r *WorkflowReconciler) workflowsOf(ctx context.Context, namespace, broker string) []reconcile.Request {
	var list v1alpha1.WorkflowList
	if err := r.client.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{brokerIndex: broker}); err != nil {
		log.FromContext(ctx).Error(err, "Cannot list the Workflows of a Broker", "broker", broker)
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, wf := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&wf)}
	}
	return reqs
}
