package controllers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// wantCondition is what a table test expects of one condition.
type wantCondition struct {
	status  metav1.ConditionStatus
	reason  string
	message string // a substring
}

func checkCondition(t *testing.T, conds []metav1.Condition, typ string, generation int64, want wantCondition) {
	t.Helper()
	c := meta.FindStatusCondition(conds, typ)
	if c == nil {
		t.Fatalf("no %s condition in %v", typ, conds)
	}
	if c.Status != want.status || c.Reason != want.reason || !strings.Contains(c.Message, want.message) {
		t.Errorf("%s = %s/%s %q, want %s/%s containing %q", typ, c.Status, c.Reason, c.Message, want.status, want.reason, want.message)
	}
	if c.ObservedGeneration != generation {
		t.Errorf("%s observedGeneration %d, want %d", typ, c.ObservedGeneration, generation)
	}
}

func testWorkflow(style v1alpha1.Style) *v1alpha1.Workflow {
	wf := &v1alpha1.Workflow{Spec: v1alpha1.WorkflowSpec{Style: style}}
	wf.Name, wf.Namespace, wf.Generation = "shop", "prod", 7
	return wf
}

func TestSetCompiledCondition(t *testing.T) {
	orchestrated := &plan.Plan{Roles: plan.Roles{Orchestrator: true, Gateway: true}, Steps: make([]plan.Step, 3)}
	tests := []struct {
		name string
		plan *plan.Plan
		err  error
		want wantCondition
	}{
		{"compiled", orchestrated, nil, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonCompiled, "Compiled hybrid into 3 steps, orchestrator, gateway"}},
		{"a cycle", nil, &topology.Error{Problems: []topology.Problem{{Reason: topology.ReasonDependencyCycle, Message: "dependsOn has a cycle: a → b → a"}}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonCompileFailed, "a → b → a"}},
		{"a name too long", nil, &topology.Error{Problems: []topology.Problem{{Reason: topology.ReasonNameTooLong, Message: "child name is 70 characters"}}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonNameTooLong, "70 characters"}},
		{"any other error", nil, errors.New("boom"), wantCondition{metav1.ConditionFalse, v1alpha1.ReasonCompileFailed, "boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(v1alpha1.StyleHybrid)
			setCompiledCondition(wf, tt.plan, tt.err)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionCompiled, 7, tt.want)
		})
	}
}

func TestSetBrokerReadyCondition(t *testing.T) {
	readyBroker := &v1alpha1.Broker{Status: v1alpha1.BrokerStatus{URL: "nats://default-nats.prod.svc:4222", ReadyReplicas: 3,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionBrokerAvailable, Status: metav1.ConditionTrue}}}}
	three := int32(3)
	startingBroker := &v1alpha1.Broker{Spec: v1alpha1.BrokerSpec{Replicas: &three}, Status: v1alpha1.BrokerStatus{ReadyReplicas: 1,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionBrokerAvailable, Status: metav1.ConditionFalse}}}}
	tests := []struct {
		name  string
		style v1alpha1.Style
		state brokerState
		want  wantCondition
	}{
		{"a sync style needs none", v1alpha1.StyleSyncChain, brokerState{}, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonBrokerNotNeeded, "sync-chain does not use a broker"}},
		{"missing", v1alpha1.StyleHybrid, brokerState{needed: true, name: "default"}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonBrokerNotFound, "Broker default does not exist in namespace prod"}},
		{"not ready", v1alpha1.StyleChoreography, brokerState{needed: true, name: "default", broker: startingBroker}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonBrokerNotReady, "1 of 3 servers ready"}},
		{"ready", v1alpha1.StyleAsyncOrchestrated, brokerState{needed: true, name: "default", broker: readyBroker}, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonBrokerReady, "nats://default-nats.prod.svc:4222"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(tt.style)
			setBrokerReadyCondition(wf, tt.state)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionBrokerReady, 7, tt.want)
		})
	}
}

func TestSetStepsReadyCondition(t *testing.T) {
	conflict := &nameError{reason: v1alpha1.ReasonNameConflict, message: "Deployment a-b-c already exists and belongs to Workflow a-b"}
	tooLong := &nameError{reason: v1alpha1.ReasonNameTooLong, message: "Service name x is 70 characters"}
	tests := []struct {
		name      string
		readiness workloadReadiness
		want      wantCondition
	}{
		{"all ready", workloadReadiness{compiled: true, total: 4}, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStepsReady, "All 4 Deployments ready"}},
		{"progressing", workloadReadiness{compiled: true, total: 4, waiting: []string{"shop-charge", "shop-gateway"}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonStepsProgressing, "2 of 4 Deployments ready; waiting for shop-charge, shop-gateway"}},
		{"not compiled", workloadReadiness{}, wantCondition{metav1.ConditionUnknown, v1alpha1.ReasonCompileFailed, "did not compile"}},
		{"a name conflict wins over progress", workloadReadiness{compiled: true, total: 2, waiting: []string{"a-b-c"}, nameErrors: []*nameError{conflict, tooLong}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonNameConflict, "belongs to Workflow a-b; Service name x is 70 characters"}},
		{"a refused child wins over everything, even all ready", workloadReadiness{compiled: true, total: 2, nameErrors: []*nameError{conflict},
			applyErrors: []error{errors.New("apply Deployment shop-a: invalid"), errors.New("apply Service shop-a: invalid")}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonApplyFailed, "The API server refused the desired state, so children may be stale: apply Deployment shop-a: invalid; apply Service shop-a: invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(v1alpha1.StyleHybrid)
			setStepsReadyCondition(wf, tt.readiness)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionStepsReady, 7, tt.want)
		})
	}
}

func TestSetReadyCondition(t *testing.T) {
	cond := func(typ string, status metav1.ConditionStatus, reason, msg string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg}
	}
	compiled := cond(v1alpha1.ConditionCompiled, metav1.ConditionTrue, v1alpha1.ReasonCompiled, "")
	brokerOK := cond(v1alpha1.ConditionBrokerReady, metav1.ConditionTrue, v1alpha1.ReasonBrokerReady, "")
	stepsOK := cond(v1alpha1.ConditionStepsReady, metav1.ConditionTrue, v1alpha1.ReasonStepsReady, "")
	secretsOK := cond(v1alpha1.ConditionSecretsAllowed, metav1.ConditionTrue, v1alpha1.ReasonSecretsAllowed, "")
	tests := []struct {
		name  string
		conds []metav1.Condition
		want  wantCondition
		// planHash is that of the last plan that compiled.
		planHash string
	}{
		{"all true", []metav1.Condition{compiled, brokerOK, secretsOK, stepsOK}, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonReady, "Serving at http://shop.prod.svc"}, ""},
		{"the first false one names the reason", []metav1.Condition{
			cond(v1alpha1.ConditionCompiled, metav1.ConditionFalse, v1alpha1.ReasonCompileFailed, "cycle a → b → a"),
			cond(v1alpha1.ConditionBrokerReady, metav1.ConditionFalse, v1alpha1.ReasonBrokerNotFound, "no broker"),
		}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonCompileFailed, "Compiled is False: cycle a → b → a"}, ""},
		{"a failed compile after a good one says the status is of the last good plan", []metav1.Condition{
			cond(v1alpha1.ConditionCompiled, metav1.ConditionFalse, v1alpha1.ReasonCompileFailed, "cycle a → b → a"), brokerOK, secretsOK, stepsOK,
		}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonCompileFailed,
			"Compiled is False: cycle a → b → a; the children still run the last plan that compiled (0123abcd), which status.steps and status.endpoint describe"}, "0123abcd"},
		{"broker missing", []metav1.Condition{compiled, cond(v1alpha1.ConditionBrokerReady, metav1.ConditionFalse, v1alpha1.ReasonBrokerNotFound, "Broker default does not exist"), secretsOK, stepsOK},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonBrokerNotFound, "BrokerReady is False: Broker default does not exist"}, ""},
		{"a secret refused", []metav1.Condition{compiled, brokerOK,
			cond(v1alpha1.ConditionSecretsAllowed, metav1.ConditionFalse, v1alpha1.ReasonSecretNotAllowed, "step a, spec.steps[0].envFrom[0].secretRef: Secret x does not exist"), stepsOK},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonSecretNotAllowed, "SecretsAllowed is False: step a, spec.steps[0].envFrom[0].secretRef: Secret x does not exist"}, ""},
		{"a missing condition", []metav1.Condition{compiled, brokerOK, secretsOK}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonNotReady, "StepsReady is not known yet"}, ""},
		{"style advice does not count", []metav1.Condition{compiled, brokerOK, secretsOK, stepsOK,
			cond(v1alpha1.ConditionStyleAdvised, metav1.ConditionFalse, v1alpha1.ReasonStyleMismatch, "")},
			wantCondition{metav1.ConditionTrue, v1alpha1.ReasonReady, ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(v1alpha1.StyleHybrid)
			wf.Status.Endpoint = "http://shop.prod.svc"
			wf.Status.PlanHash = tt.planHash
			wf.Status.Conditions = tt.conds
			setReadyCondition(wf)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionReady, 7, tt.want)
		})
	}
}

func TestSetStyleAdvisedCondition(t *testing.T) {
	traffic := func(r, w int32) *v1alpha1.Traffic { return &v1alpha1.Traffic{ReadsPerSecond: r, WritesPerSecond: w} }
	tests := []struct {
		name      string
		style     v1alpha1.Style
		traffic   *v1alpha1.Traffic
		readModel bool
		want      wantCondition
	}{
		{"no traffic given", v1alpha1.StyleHybrid, nil, false, wantCondition{metav1.ConditionUnknown, v1alpha1.ReasonNoTraffic, "spec.traffic is not given"}},
		{"zero traffic", v1alpha1.StyleHybrid, traffic(0, 0), false, wantCondition{metav1.ConditionUnknown, v1alpha1.ReasonNoTraffic, ""}},
		{"read-heavy on a sync style", v1alpha1.StyleSyncChain, traffic(800, 5), false, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStyleFits, "sync-chain fits 800 reads/s and 5 writes/s"}},
		{"read-heavy on an async style", v1alpha1.StyleAsyncOrchestrated, traffic(300, 40), false, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonStyleMismatch, "use a sync style"}},
		{"read-heavy on an async style with a read model", v1alpha1.StyleHybrid, traffic(300, 40), true, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStyleFits, "read model"}},
		{"write-heavy on an async style", v1alpha1.StyleHybrid, traffic(50, 2000), false, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStyleFits, "absorbs write bursts"}},
		{"write-heavy on a sync style", v1alpha1.StyleSyncOrchestrated, traffic(20, 1500), false, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonStyleMismatch, "async-orchestrated or hybrid"}},
		{"balanced", v1alpha1.StyleSyncOrchestrated, traffic(100, 80), false, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStyleFits, "neither reads nor writes dominate"}},
		{"both heavy without a read model", v1alpha1.StyleHybrid, traffic(5000, 3000), false, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonStyleMismatch, "spec.readModel"}},
		{"both heavy with a read model", v1alpha1.StyleChoreography, traffic(5000, 3000), true, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonStyleFits, "read model"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(tt.style)
			wf.Spec.Traffic = tt.traffic
			if tt.readModel {
				wf.Spec.ReadModel = &v1alpha1.ReadModel{Events: []string{"e"}, Key: "/id"}
			}
			setStyleAdvisedCondition(wf)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionStyleAdvised, 7, tt.want)
		})
	}
}

func TestSetBrokerAvailableCondition(t *testing.T) {
	three := int32(3)
	tests := []struct {
		name      string
		readiness brokerReadiness
		want      wantCondition
	}{
		{"ready", brokerReadiness{ready: true}, wantCondition{metav1.ConditionTrue, v1alpha1.ReasonReplicasReady, "All 3 NATS servers ready at nats://"}},
		{"starting", brokerReadiness{}, wantCondition{metav1.ConditionFalse, v1alpha1.ReasonReplicasNotReady, "1 of 3 NATS servers ready"}},
		{"a name taken", brokerReadiness{ready: true, nameErr: &nameError{reason: v1alpha1.ReasonNameConflict, message: "Secret x already exists"}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonNameConflict, "Secret x already exists"}},
		{"a storage change pending, on servers that are ready", brokerReadiness{ready: true, storageChange: "spec.jetstream.size changed from 1Gi to 2Gi, but"},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonStorageChangeRequiresRecreate, "spec.jetstream.size changed from 1Gi to 2Gi"}},
		{"a refused child, on servers that are ready", brokerReadiness{ready: true, applyErrors: []error{errors.New("apply StatefulSet x-nats: invalid")}},
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonApplyFailed, "children may be stale: apply StatefulSet x-nats: invalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &v1alpha1.Broker{Spec: v1alpha1.BrokerSpec{Replicas: &three}, Status: v1alpha1.BrokerStatus{ReadyReplicas: 1, URL: "nats://default-nats.prod.svc:4222"}}
			b.Generation = 7
			setBrokerAvailableCondition(b, tt.readiness)
			checkCondition(t, b.Status.Conditions, v1alpha1.ConditionBrokerAvailable, 7, tt.want)
		})
	}
}

func TestSetReadModelCurrentCondition(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *time.Time { t := now.Add(-ago); return &t }
	withReadModel := &plan.Plan{ReadModel: &plan.ReadModel{Events: []string{"paid"}}}
	asked := func(s readModelStatus) readModelState {
		return readModelState{gateway: "shop-gateway", ready: true, url: "http://shop-gateway.prod.svc/readmodel", status: &s}
	}
	tests := []struct {
		name  string
		state readModelState
		want  wantCondition
	}{
		{"gateway not ready", readModelState{gateway: "shop-gateway"},
			wantCondition{metav1.ConditionUnknown, v1alpha1.ReasonGatewayNotReady, "The gateway shop-gateway is not ready"}},
		{"gateway does not answer", readModelState{gateway: "shop-gateway", ready: true, url: "http://shop-gateway.prod.svc/readmodel", err: errors.New("connection refused")},
			wantCondition{metav1.ConditionUnknown, v1alpha1.ReasonReadModelUnreachable, "at http://shop-gateway.prod.svc/readmodel how far the read model is behind failed: connection refused"}},
		{"nothing pending", asked(readModelStatus{Current: true, LastProjectedAt: at(time.Hour)}),
			wantCondition{metav1.ConditionTrue, v1alpha1.ReasonReadModelCurrent, "Every event published so far is projected"}},
		{"pending, projecting", asked(readModelStatus{Pending: 40, LastProjectedAt: at(time.Second)}),
			wantCondition{metav1.ConditionTrue, v1alpha1.ReasonReadModelProjecting, "within the last 30s"}},
		{"pending, stalled", asked(readModelStatus{Pending: 40, LastProjectedAt: at(time.Minute)}),
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonReadModelLagging, "40 events wait to be projected and it last projected one at 2026-11-30T11:59:00Z"}},
		{"pending, never projected", asked(readModelStatus{Pending: 2}),
			wantCondition{metav1.ConditionFalse, v1alpha1.ReasonReadModelLagging, "2 events wait to be projected and it has projected none yet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := testWorkflow(v1alpha1.StyleChoreography)
			setReadModelCurrentCondition(wf, withReadModel, tt.state, now)
			checkCondition(t, wf.Status.Conditions, v1alpha1.ConditionReadModelCurrent, 7, tt.want)
		})
	}
	t.Run("no read model", func(t *testing.T) {
		wf := testWorkflow(v1alpha1.StyleChoreography)
		setReadModelCurrentCondition(wf, withReadModel, asked(readModelStatus{}), now)
		setReadModelCurrentCondition(wf, &plan.Plan{}, readModelState{}, now)
		if c := meta.FindStatusCondition(wf.Status.Conditions, v1alpha1.ConditionReadModelCurrent); c != nil {
			t.Errorf("a Workflow without a read model has %v", c)
		}
	})
}
