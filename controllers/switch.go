package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// A style switch is make-before-break (docs/operations.md, Switching style):
//
//  1. the new style's children start beside the old ones (their names carry
//     the style's code, so nothing is shared but the entry Service);
//  2. once every new Deployment is ready, the entry Service's selector moves
//     to the new style, and the Deployment that was the entry is restarted,
//     so that callers' kept-alive connections, which a Service's new
//     selector does not move, end on drained answers and reconnect to the
//     new entry;
//  3. the earlier styles' children run on for their drain period, in which
//     their in-flight requests finish and their pending runs finish or fail;
//  4. then they are deleted.
//
// The earlier styles and when their drain ends are kept in status.retiring.

// retiredAtAnnotation on the pod template of an earlier style's entry
// Deployment restarts it when the entry leaves it.
const retiredAtAnnotation = "patchbay.dev/retired-at"

// switchFieldOwner writes the restart annotation, as a manager of its own: the
// annotation is not part of what FieldOwner applies and compares (ownsAlready),
// and it stays when the style is current again, so it rolls nothing then.
const switchFieldOwner = "patchbay-switch"

// switchState is what the switch phase found, for the status.
type switchState struct {
	// current is the current style's code.
	current string
	// entryOn is the code of the style the entry Service selects after this
	// reconcile; empty when it does not exist or predates style codes.
	entryOn string
	// movedFrom is the code of the style the entry left in this reconcile.
	movedFrom string
	// waiting are the current style's Deployments that are not ready while
	// the entry stays on an earlier style.
	waiting []string
	// retiring are the earlier styles still running, sorted.
	retiring []v1alpha1.RetiringStyle
	// legacy is true while children without a style label run (made before
	// styles carried codes); they go once the entry has moved.
	legacy bool
}

// switchStyles runs the switch: it applies the entry Service when the current
// style's children are ready (or when it is the first), restarts the entry
// Deployment it leaves, and marks the earlier styles' children that still
// drain as desired, so that pruning keeps them.
func (r *WorkflowReconciler) switchStyles(ctx context.Context, s *workflowScope) (ctrl.Result, error) {
	if s.input == nil {
		return ctrl.Result{}, nil
	}
	wf := s.wf
	sw := &switchState{current: wf.Spec.Style.Code()}
	s.switching = sw
	others, err := r.childrenOfOtherStyles(ctx, wf, sw.current)
	if err != nil {
		return ctrl.Result{}, err
	}
	entry := render.EntryService(s.input)
	live := &corev1.Service{}
	err = r.client.Get(ctx, client.ObjectKeyFromObject(entry), live)
	if client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("get the entry Service: %w", err)
	}
	exists := err == nil
	if exists {
		sw.entryOn = live.Spec.Selector[render.LabelStyle]
	}
	ready := !s.failed && len(s.nameErrors) == 0 && len(s.readiness.waiting) == 0
	now := r.now()
	var restart time.Duration
	if exists && sw.entryOn != sw.current && !ready {
		// Make before break: the entry stays where it is.
		s.desired[keyOf(entry)] = true
		sw.waiting = s.readiness.waiting
	} else {
		if err := r.applyChildren(ctx, s, entry); err != nil {
			return ctrl.Result{}, err
		}
		if exists && sw.entryOn != sw.current {
			sw.movedFrom = sw.entryOn
			log.FromContext(ctx).Info("Moved the entry to the new style", "from", sw.movedFrom, "to", sw.current)
			if restart, err = r.restartRetiredEntry(ctx, wf, live, now); err != nil {
				return ctrl.Result{}, err
			}
		}
		sw.entryOn = sw.current
	}

	// Every earlier style drains but the one the entry still serves: from
	// the moment the entry left it (plus the restart of its entry), or, for
	// one the entry never reached, from when it stopped being the current one.
	var result ctrl.Result
	var drained [][]childKey
	for code, keys := range others {
		st := v1alpha1.StyleOfCode(code)
		if code == sw.entryOn {
			keep(s, keys)
			sw.legacy = sw.legacy || st == ""
			if st != "" {
				sw.retiring = append(sw.retiring, v1alpha1.RetiringStyle{Style: st})
			}
			continue
		}
		if st == "" {
			// Children made before styles had codes: the entry has left them.
			continue
		}
		until := drainUntilOf(wf, st)
		if until == nil {
			period, err := r.drainPeriod(ctx, wf, st, s.plan)
			if err != nil {
				return ctrl.Result{}, err
			}
			if code == sw.movedFrom {
				period += restart
			}
			until = &metav1.Time{Time: now.Add(period).Truncate(time.Second).Add(time.Second)}
		}
		if left := until.Sub(now); left > 0 {
			keep(s, keys)
			sw.retiring = append(sw.retiring, v1alpha1.RetiringStyle{Style: st, DrainUntil: until})
			result = shortest(result, ctrl.Result{RequeueAfter: left})
			continue
		}
		// The style has drained: its children are pruned below, and what it
		// held on the Broker goes first (cleanBroker).
		if st.IsAsync() {
			drained = append(drained, keys)
		}
		log.FromContext(ctx).Info("An earlier style has drained; pruning its children", "style", st)
	}
	sortRetiring(sw.retiring)
	if len(drained) > 0 {
		if res := r.cleanBroker(ctx, s, sw); !res.IsZero() {
			// Its children stay until the Broker is clean, so that nothing of
			// the drained style is left without an owner to retry.
			for _, keys := range drained {
				keep(s, keys)
			}
			result = shortest(result, res)
		}
	}
	return result, nil
}

// cleanBroker deletes from the Broker what the async styles that just drained
// held and the styles still running do not need: consumers and buckets the
// current plan does not name, or, when no async style runs any more, the
// stream, the buckets and the Workflow's user. While another async style still
// drains it does nothing: the last one to drain cleans for all of them. A
// failure is retried after a while (the result), never returned.
func (r *WorkflowReconciler) cleanBroker(ctx context.Context, s *workflowScope, sw *switchState) ctrl.Result {
	for _, rs := range sw.retiring {
		if rs.Style.IsAsync() {
			return ctrl.Result{}
		}
	}
	var keepPlan *plan.Plan
	if s.plan != nil && s.plan.Style.IsAsync() {
		keepPlan = s.plan
	}
	err := r.BrokerCleanup(ctx, s.wf, keepPlan)
	switch {
	case err == nil, errors.Is(err, errBrokerGone):
		return ctrl.Result{}
	default:
		log.FromContext(ctx).Info("Could not yet delete what a drained style held on its Broker; retrying", "error", err.Error())
		return ctrl.Result{RequeueAfter: 10 * time.Second}
	}
}

// now reads the reconciler's clock, the wall clock unless a test sets one.
func (r *WorkflowReconciler) now() time.Time {
	if r.clock != nil {
		return r.clock()
	}
	return time.Now()
}

// keep marks children as desired, so that pruning leaves them.
func keep(s *workflowScope, keys []childKey) {
	for _, k := range keys {
		s.desired[k] = true
	}
}

func sortRetiring(rs []v1alpha1.RetiringStyle) {
	slices.SortFunc(rs, func(a, b v1alpha1.RetiringStyle) int { return strings.Compare(string(a.Style), string(b.Style)) })
}

// drainUntilOf is when the status says style st stops draining; nil when not yet known.
func drainUntilOf(wf *v1alpha1.Workflow, st v1alpha1.Style) *metav1.Time {
	for _, r := range wf.Status.Retiring {
		if r.Style == st && r.DrainUntil != nil {
			return r.DrainUntil.DeepCopy()
		}
	}
	return nil
}

// childrenOfOtherStyles lists the Workflow's children that carry another
// style's code, by code; children without one (made before codes) are under "".
// The entry Service belongs to no style and is not listed.
func (r *WorkflowReconciler) childrenOfOtherStyles(ctx context.Context, wf *v1alpha1.Workflow, current string) (map[string][]childKey, error) {
	out := map[string][]childKey{}
	for _, k := range childKindsOf(ownedByWorkflow) {
		list := k.newList()
		if err := r.client.List(ctx, list, client.InNamespace(wf.Namespace), client.MatchingLabels{render.LabelWorkflow: wf.Name}, controlledBy(wf)); err != nil {
			return nil, fmt.Errorf("list %s: %w", k.kind, err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			return nil, err
		}
		for _, item := range items {
			obj := item.(client.Object)
			ref := metav1.GetControllerOf(obj)
			if ref == nil || ref.UID != wf.UID || obj.GetLabels()[render.LabelComponent] == render.ComponentEntry {
				continue
			}
			code := obj.GetLabels()[render.LabelStyle]
			if code == current {
				continue
			}
			out[code] = append(out[code], childKey{kind: k.kind, name: obj.GetName()})
		}
	}
	return out, nil
}

// restartRetiredEntry restarts the Deployment whose pods the entry selected
// before it moved, and returns how long its pods may take to stop. A
// Service's new selector reaches new connections only: callers that keep
// theirs alive would go on sending to the earlier style, and an async style
// would accept runs until its very end. The restarted pods drain (docs/
// operations.md, Graceful shutdown), their last answers close the
// connections, and the callers reconnect to the new entry. The new pods of
// the earlier style take no entry traffic; they serve what is addressed to
// them, such as GET /runs/{id} on the earlier gateway's Service.
func (r *WorkflowReconciler) restartRetiredEntry(ctx context.Context, wf *v1alpha1.Workflow, entry *corev1.Service, now time.Time) (time.Duration, error) {
	sel := entry.Spec.Selector
	st := v1alpha1.StyleOfCode(sel[render.LabelStyle])
	if st == "" {
		return 0, nil
	}
	name := plan.ChildName(wf.Name, st, sel[render.LabelComponent])
	if sel[render.LabelComponent] == render.ComponentStep {
		name = plan.ChildName(wf.Name, st, sel[render.LabelStep])
	}
	d := &appsv1.Deployment{}
	if err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: name}, d); err != nil {
		return 0, client.IgnoreNotFound(err)
	}
	if ref := metav1.GetControllerOf(d); ref == nil || ref.UID != wf.UID {
		return 0, nil
	}
	patch := client.MergeFrom(d.DeepCopy())
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations[retiredAtAnnotation] = now.UTC().Format(time.RFC3339)
	if err := r.client.Patch(ctx, d, patch, client.FieldOwner(switchFieldOwner)); err != nil {
		return 0, fmt.Errorf("restart %s, the entry of %s: %w", name, st, err)
	}
	var grace time.Duration
	if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	return grace, nil
}

// drainPeriod is the drain period of style st (plan.DrainPeriod), read from
// the plan its pods run; the current plan's when that is gone.
func (r *WorkflowReconciler) drainPeriod(ctx context.Context, wf *v1alpha1.Workflow, st v1alpha1.Style, current *plan.Plan) (time.Duration, error) {
	cm := &corev1.ConfigMap{}
	err := r.client.Get(ctx, types.NamespacedName{Namespace: wf.Namespace, Name: plan.ConfigMapName(wf.Name, st)}, cm)
	if client.IgnoreNotFound(err) != nil {
		return 0, fmt.Errorf("get the plan of %s: %w", st, err)
	}
	if err == nil {
		if p, perr := plan.Parse([]byte(cm.Data[render.PlanKey])); perr == nil {
			return max(p.DrainPeriod(), current.DrainPeriod()), nil
		}
	}
	return current.DrainPeriod(), nil
}

// setSwitchingCondition says whether a switch is in progress and what it waits for.
func setSwitchingCondition(wf *v1alpha1.Workflow, sw *switchState) {
	if sw == nil {
		return
	}
	wf.Status.Retiring = sw.retiring
	style := wf.Spec.Style
	names := func() string {
		var parts []string
		for _, r := range sw.retiring {
			if r.DrainUntil != nil {
				parts = append(parts, fmt.Sprintf("%s until %s", r.Style, r.DrainUntil.UTC().Format(time.RFC3339)))
			} else {
				parts = append(parts, string(r.Style))
			}
		}
		if sw.legacy {
			parts = append(parts, "children without a style label")
		}
		return strings.Join(parts, ", ")
	}
	status := metav1.ConditionTrue
	var reason, msg string
	switch {
	case sw.entryOn != sw.current:
		reason = v1alpha1.ReasonNewStyleStarting
		msg = fmt.Sprintf("Starting %s beside %s: waiting for %s to be ready; the entry stays on %s",
			style, names(), strings.Join(sw.waiting, ", "), styleName(sw.entryOn))
	case sw.movedFrom != "":
		reason = v1alpha1.ReasonEntryMoved
		msg = fmt.Sprintf("The entry moved from %s to %s; draining %s", styleName(sw.movedFrom), style, names())
	case len(sw.retiring) > 0 || sw.legacy:
		reason = v1alpha1.ReasonDrainingOldStyle
		msg = fmt.Sprintf("The entry serves %s; draining %s: in-flight requests finish and pending runs finish or fail before those children are deleted", style, names())
	default:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonNoSwitch
		msg = fmt.Sprintf("Only the children of %s run, and the entry serves them", style)
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionSwitching, status, reason, msg)
}

// styleName names the style of a code for a message.
func styleName(code string) string {
	if st := v1alpha1.StyleOfCode(code); st != "" {
		return string(st)
	}
	return "children without a style label"
}
