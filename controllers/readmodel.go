package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
)

// The manager learns how far a Workflow's read model is behind from its
// gateway's GET /readmodel (docs/api.md, The read model), through the
// gateway's Service: the gateway reads the projector's consumer, which every
// replica shares, so any replica answers for all. The manager asks again every
// readModelPoll while the Workflow has a read model, since nothing in the
// cluster changes when the projection falls behind.
const (
	readModelPoll = 30 * time.Second
	// readModelStall is how long events may wait with no projection before
	// the read model counts as lagging rather than busy.
	readModelStall = 30 * time.Second
	// readModelAskTimeout bounds the question, which a reconcile waits for.
	readModelAskTimeout = 3 * time.Second
)

// readModelStatus is the gateway's GET /readmodel answer.
type readModelStatus struct {
	Pending         uint64     `json:"pending"`
	Current         bool       `json:"current"`
	LastProjectedAt *time.Time `json:"lastProjectedAt,omitempty"`
}

// readModelState is what a reconcile learnt of the read model.
type readModelState struct {
	// gateway is the gateway's Deployment; ready is false while it waits.
	gateway string
	ready   bool
	url     string
	status  *readModelStatus
	err     error
}

// observeReadModel asks the gateway, once its Deployment is ready.
func (r *WorkflowReconciler) observeReadModel(ctx context.Context, s *workflowScope, readiness workloadReadiness) readModelState {
	wf := s.wf
	st := readModelState{gateway: plan.ChildName(wf.Name, wf.Spec.Style, render.ComponentGateway)}
	st.ready = !slices.Contains(readiness.waiting, st.gateway)
	if !st.ready {
		return st
	}
	st.url = plan.ServiceURL(wf.Namespace, st.gateway) + "/readmodel"
	st.status, st.err = r.askReadModel(ctx, st.url)
	return st
}

func (r *WorkflowReconciler) askReadModel(ctx context.Context, url string) (*readModelStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, readModelAskTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return nil, err
	}
	resp, err := r.gateways.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("it answered %s: %.200s", resp.Status, body)
	}
	var st readModelStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("its answer is not a read model status: %w", err)
	}
	return &st, nil
}

// setReadModelCurrentCondition records whether the read model keeps up; a
// Workflow without one (or without a plan) has no such condition.
func setReadModelCurrentCondition(wf *v1alpha1.Workflow, p *plan.Plan, st readModelState, now time.Time) {
	if p == nil || p.ReadModel == nil {
		meta.RemoveStatusCondition(&wf.Status.Conditions, v1alpha1.ConditionReadModelCurrent)
		return
	}
	var status metav1.ConditionStatus
	var reason, msg string
	switch s := st.status; {
	case !st.ready:
		status, reason = metav1.ConditionUnknown, v1alpha1.ReasonGatewayNotReady
		msg = fmt.Sprintf("The gateway %s is not ready: it projects the events and says how far behind it is", st.gateway)
	case st.err != nil:
		status, reason = metav1.ConditionUnknown, v1alpha1.ReasonReadModelUnreachable
		msg = fmt.Sprintf("Asking the gateway at %s how far the read model is behind failed: %v", st.url, st.err)
	case s.Pending == 0:
		status, reason, msg = metav1.ConditionTrue, v1alpha1.ReasonReadModelCurrent, "Every event published so far is projected"
	case s.LastProjectedAt != nil && now.Sub(*s.LastProjectedAt) < readModelStall:
		status, reason = metav1.ConditionTrue, v1alpha1.ReasonReadModelProjecting
		msg = fmt.Sprintf("Events are pending, and the projector is working through them: it projected one within the last %s", readModelStall)
	default:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonReadModelLagging
		since := "it has projected none yet"
		if s.LastProjectedAt != nil {
			since = "it last projected one at " + s.LastProjectedAt.UTC().Format(time.RFC3339)
		}
		msg = fmt.Sprintf("%d events wait to be projected and %s: GET /query answers are stale. Look at the gateway's logs and its patchbay_read_model_* metrics", s.Pending, since)
	}
	setCondition(&wf.Status.Conditions, wf.Generation, v1alpha1.ConditionReadModelCurrent, status, reason, msg)
}
