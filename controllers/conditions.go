package controllers

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// Each condition of a Workflow is set by exactly one function below; the
// constants in api/v1alpha1/conditions.go say what their statuses mean.

// maxConditionMessage is the longest message a condition holds.
const maxConditionMessage = 32 * 1024

// applyErrorsMessage joins the errors of the children the API server refused.
func applyErrorsMessage(errs []error) string {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	msg := "The API server refused the desired state, so children may be stale: " + strings.Join(msgs, "; ")
	if len(msg) > maxConditionMessage {
		msg = msg[:maxConditionMessage-len("…")] + "…"
	}
	return msg
}

func setCondition(conds *[]metav1.Condition, generation int64, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message, ObservedGeneration: generation,
	})
}

// setCompiledCondition records whether the spec compiled into a plan, with
// the compiler's message when it did not.
func setCompiledCondition(wf *v1alpha1.Workflow, p *plan.Plan, err error) {
	if err != nil {
		reason := v1alpha1.ReasonCompileFailed
		var cerr *topology.Error
		if errors.As(err, &cerr) && cerr.Has(topology.ReasonNameTooLong) {
			reason = v1alpha1.ReasonNameTooLong
		}
		setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionCompiled, metav1.ConditionFalse, reason, err.Error())
		return
	}
	parts := []string{plural(len(p.Steps), "step")}
	parts = append(parts, render.Components(p)...)
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionCompiled, metav1.ConditionTrue, v1alpha1.ReasonCompiled,
		fmt.Sprintf("Compiled %s into %s", wf.Spec.Style, strings.Join(parts, ", ")))
}

// brokerState is what the Workflow knows of the Broker its style needs.
type brokerState struct {
	needed bool
	name   string
	// broker is nil when it does not exist or is being deleted.
	broker *v1alpha1.Broker
	// deleting is true when it is being deleted.
	deleting bool
}

// setBrokerReadyCondition records whether the Broker the style needs exists and is ready.
func setBrokerReadyCondition(wf *v1alpha1.Workflow, b brokerState) {
	status, reason := metav1.ConditionTrue, v1alpha1.ReasonBrokerReady
	var msg string
	switch {
	case !b.needed:
		reason, msg = v1alpha1.ReasonBrokerNotNeeded, fmt.Sprintf("Style %s does not use a broker", wf.Spec.Style)
	case b.deleting:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonBrokerDeleting
		msg = fmt.Sprintf("Broker %s is being deleted: the workflow's runs wait until a Broker of that name exists again, or name another in spec.broker", b.name)
	case b.broker == nil:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonBrokerNotFound
		msg = fmt.Sprintf("Broker %s does not exist in namespace %s: create it, or name another in spec.broker", b.name, wf.Namespace)
	case !meta.IsStatusConditionTrue(b.broker.Status.Conditions, v1alpha1.ConditionBrokerAvailable):
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonBrokerNotReady
		msg = fmt.Sprintf("Broker %s has %d of %d servers ready", b.name, b.broker.Status.ReadyReplicas, b.broker.DesiredReplicas())
	default:
		msg = fmt.Sprintf("Broker %s is ready at %s", b.name, b.broker.Status.URL)
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionBrokerReady, status, reason, msg)
}

// workloadReadiness is the state of a Workflow's Deployments after a reconcile.
type workloadReadiness struct {
	// compiled is false when there is no plan to measure against.
	compiled bool
	// nameErrors are children that could not be applied under their names.
	nameErrors []*nameError
	// applyErrors are children the API server refused for another reason.
	applyErrors []error
	// waiting are the Deployments that do not have all their replicas ready.
	waiting []string
	total   int
}

// setStepsReadyCondition records whether every Deployment of the workflow
// (steps, orchestrator, gateway) has all its replicas ready; a child the API
// server refused, or that could not take its name, keeps it False.
func setStepsReadyCondition(wf *v1alpha1.Workflow, r workloadReadiness) {
	status, reason := metav1.ConditionTrue, v1alpha1.ReasonStepsReady
	var msg string
	switch {
	case len(r.applyErrors) > 0:
		status, reason, msg = metav1.ConditionFalse, v1alpha1.ReasonApplyFailed, applyErrorsMessage(r.applyErrors)
	case len(r.nameErrors) > 0:
		status, reason = metav1.ConditionFalse, r.nameErrors[0].reason
		msgs := make([]string, len(r.nameErrors))
		for i, e := range r.nameErrors {
			msgs[i] = e.message
		}
		msg = strings.Join(msgs, "; ")
	case !r.compiled:
		status, reason, msg = metav1.ConditionUnknown, v1alpha1.ReasonCompileFailed, "The spec did not compile, so there is no topology to run"
	case len(r.waiting) > 0:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonStepsProgressing
		msg = fmt.Sprintf("%d of %d Deployments ready; waiting for %s", r.total-len(r.waiting), r.total, strings.Join(r.waiting, ", "))
	default:
		msg = fmt.Sprintf("All %s ready", plural(r.total, "Deployment"))
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionStepsReady, status, reason, msg)
}

// setReadyCondition records whether Compiled, BrokerReady, SecretsAllowed and
// StepsReady all are True; when not, it takes the reason of the first that is not and says
// which, and after a failed compile that the status describes an older plan.
func setReadyCondition(wf *v1alpha1.Workflow) {
	for _, typ := range []string{v1alpha1.ConditionCompiled, v1alpha1.ConditionBrokerReady, v1alpha1.ConditionSecretsAllowed, v1alpha1.ConditionStepsReady} {
		c := meta.FindStatusCondition(wf.Status.Conditions, typ)
		if c == nil {
			setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonNotReady, typ+" is not known yet")
			return
		}
		if c.Status != metav1.ConditionTrue {
			msg := typ + " is " + string(c.Status) + ": " + c.Message
			if typ == v1alpha1.ConditionCompiled && wf.Status.PlanHash != "" {
				// Nothing is applied without a plan: what runs, and what the status shows, is older than the spec.
				msg += fmt.Sprintf("; the children still run the last plan that compiled (%s), which status.steps and status.endpoint describe", wf.Status.PlanHash)
			}
			setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionReady, metav1.ConditionFalse, c.Reason, msg)
			return
		}
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonReady, "Serving at "+wf.Status.Endpoint)
}

// setStyleAdvisedCondition records whether spec.traffic fits the chosen style.
func setStyleAdvisedCondition(wf *v1alpha1.Workflow) {
	status, reason, msg := adviseStyle(wf.Spec.Style, wf.Spec.Traffic, wf.Spec.ReadModel != nil)
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionStyleAdvised, status, reason, msg)
}

// brokerReadiness is the state of a Broker's children after a reconcile.
type brokerReadiness struct {
	// ready says that the StatefulSet runs the current template with every server ready.
	ready bool
	// nameErr is a child that could not be applied under its name.
	nameErr *nameError
	// applyErrors are children the API server refused for another reason.
	applyErrors []error
	// storageChange is a change of spec.jetstream the StatefulSet cannot take.
	storageChange string
}

// setBrokerAvailableCondition records whether every NATS server of a Broker is
// ready; a child the API server refused, a child that could not take its
// name, or a storage change the StatefulSet cannot take keeps it False.
func setBrokerAvailableCondition(b *v1alpha1.Broker, r brokerReadiness) {
	status, reason := metav1.ConditionFalse, v1alpha1.ReasonReplicasNotReady
	msg := fmt.Sprintf("%d of %d NATS servers ready", b.Status.ReadyReplicas, b.DesiredReplicas())
	switch {
	case len(r.applyErrors) > 0:
		reason, msg = v1alpha1.ReasonApplyFailed, applyErrorsMessage(r.applyErrors)
	case r.nameErr != nil:
		reason, msg = r.nameErr.reason, r.nameErr.message
	case r.storageChange != "":
		reason, msg = v1alpha1.ReasonStorageChangeRequiresRecreate, r.storageChange
	case r.ready:
		status, reason = metav1.ConditionTrue, v1alpha1.ReasonReplicasReady
		msg = fmt.Sprintf("All %s ready at %s", plural(int(b.DesiredReplicas()), "NATS server"), b.Status.URL)
	}
	setCondition(&b.Status.Conditions, b.Generation, v1alpha1.ConditionBrokerAvailable, status, reason, msg)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
