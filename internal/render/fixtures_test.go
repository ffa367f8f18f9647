package render

import (
	"github.com/patchbay-dev/patchbay/internal/natsauth"

	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

// goldenNamespace and goldenUID make rendered owners reproducible.
const (
	goldenNamespace = "default"
	goldenUID       = types.UID("00000000-0000-0000-0000-00000000cafe")
)

var testSettings = Settings{
	RuntimeImage:      "registry.test/patchbay-runtime:test",
	NATSImage:         "registry.test/nats:test",
	ComponentReplicas: 2,
}

func policy() plan.Policy {
	return plan.Policy{
		Timeout:        plan.D(2 * time.Second),
		Retry:          plan.Retry{Attempts: 3, Backoff: "exponential", InitialDelay: plan.D(100 * time.Millisecond), MaxDelay: plan.D(2 * time.Second)},
		CircuitBreaker: plan.CircuitBreaker{ConsecutiveFailures: 5, OpenDuration: plan.D(30 * time.Second), HalfOpenRequests: 1},
		Bulkhead:       plan.Bulkhead{MaxConcurrent: 64},
	}
}

func workflow(name string, style v1alpha1.Style, steps ...v1alpha1.Step) *v1alpha1.Workflow {
	wf := &v1alpha1.Workflow{Spec: v1alpha1.WorkflowSpec{Style: style, Steps: steps}}
	wf.Name, wf.Namespace, wf.UID = name, goldenNamespace, goldenUID
	return wf
}

func step(name string, replicas int32, dependsOn ...string) v1alpha1.Step {
	return v1alpha1.Step{Name: name, Image: "registry.test/" + name + ":1", Replicas: ptr.To(replicas), DependsOn: dependsOn}
}

func planStep(wf, name string, replicas int32, mode string, callers ...string) plan.Step {
	return plan.Step{
		Name: name, Service: wf + "-" + name, Replicas: replicas, Mode: mode,
		App: plan.App{Port: 8080, Path: "/"}, Callers: callers, Policy: policy(),
	}
}

// chainFixture is a sync-chain a → b → c whose entry is step a.
func chainFixture() (*v1alpha1.Workflow, *plan.Plan) {
	wf := workflow("quote", v1alpha1.StyleSyncChain, step("a", 1), step("b", 2, "a"), step("c", 1, "b"))
	p := &plan.Plan{
		Version: plan.Version, Namespace: wf.Namespace, Workflow: wf.Name, Style: v1alpha1.StyleSyncChain,
		Entry: plan.Entry{Kind: plan.EntryStep, Step: "a", Service: "quote", Sync: true, Timeout: plan.D(10 * time.Second)},
		Steps: []plan.Step{
			planStep("quote", "a", 1, plan.ModeChain),
			planStep("quote", "b", 2, plan.ModeChain, "a"),
			planStep("quote", "c", 1, plan.ModeChain, "b"),
		},
		Levels: [][]string{{"a"}, {"b"}, {"c"}},
		Sinks:  []string{"c"},
	}
	return wf, p
}

// orchestratedFixture is a sync-orchestrated diamond behind an orchestrator.
func orchestratedFixture() (*v1alpha1.Workflow, *plan.Plan) {
	wf := workflow("checkout", v1alpha1.StyleSyncOrchestrated, step("validate", 2), step("charge", 1, "validate"), step("reserve", 1, "validate"))
	p := &plan.Plan{
		Version: plan.Version, Namespace: wf.Namespace, Workflow: wf.Name, Style: v1alpha1.StyleSyncOrchestrated,
		Roles: plan.Roles{Orchestrator: true},
		Entry: plan.Entry{Kind: plan.EntryOrchestrator, Service: "checkout", Sync: true, Timeout: plan.D(10 * time.Second)},
		Steps: []plan.Step{
			planStep("checkout", "validate", 2, plan.ModeOrchestrated, plan.OrchestratorRole),
			planStep("checkout", "charge", 1, plan.ModeOrchestrated, plan.OrchestratorRole),
			planStep("checkout", "reserve", 1, plan.ModeOrchestrated, plan.OrchestratorRole),
		},
		Levels: [][]string{{"validate"}, {"charge", "reserve"}},
		Sinks:  []string{"charge", "reserve"},
	}
	return wf, p
}

// choreographyFixture is two event-driven steps behind a gateway, on broker "events".
func choreographyFixture() (*v1alpha1.Workflow, *plan.Plan) {
	wf := workflow("orders", v1alpha1.StyleChoreography, step("reserve", 1), step("charge", 3))
	wf.Spec.Broker = &v1alpha1.BrokerRef{Name: "events"}
	p := &plan.Plan{
		Version: plan.Version, Namespace: wf.Namespace, Workflow: wf.Name, Style: v1alpha1.StyleChoreography,
		Roles: plan.Roles{Gateway: true, Broker: true, BrokerName: "events"},
		Entry: plan.Entry{Kind: plan.EntryGateway, Service: "orders", Sync: true, Timeout: plan.D(5 * time.Second), Event: "order.requested"},
		Steps: []plan.Step{
			planStep("orders", "reserve", 1, plan.ModeEvent),
			planStep("orders", "charge", 3, plan.ModeEvent),
		},
	}
	return wf, p
}

func mustInput(t *testing.T, wf *v1alpha1.Workflow, p *plan.Plan) *WorkflowInput {
	t.Helper()
	in, err := NewWorkflowInput(wf, p, testSettings)
	if err != nil {
		t.Fatalf("NewWorkflowInput: %v", err)
	}
	return in
}

// readSample decodes one manifest of config/samples into out.
func readSample(t *testing.T, file string, out any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func sampleBroker(t *testing.T) *v1alpha1.Broker {
	t.Helper()
	var b v1alpha1.Broker
	readSample(t, "broker.yaml", &b)
	b.Namespace, b.UID = goldenNamespace, goldenUID
	return &b
}

// goldenAuth is a Broker's identity material generated once for the golden
// files (test keys, used nowhere else): generated anew, it would change them
// at every run.
var goldenAuth, _ = natsauth.FromData(map[string][]byte{
	natsauth.KeyOperatorSeed:  []byte("SOAPHHJDQWZSZZGBM4SALJX2IMKZUSMY2RAGS3GNRDM7DU6SJCBILJ7BZM"),
	natsauth.KeySystemSeed:    []byte("SAAGIEE6DEHCBZNSMDTUPSIMR4EEBCYGSYRIFKFVKHKJW6VACD3AEGEEWA"),
	natsauth.KeyAccountSeed:   []byte("SAAGYXVQ3VUIJHLB4GBDQMPJPKTUJ3PGPOZPFEMRSXOLNCFBFJDUXMIELU"),
	natsauth.KeyOperatorJWT:   []byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiI1VlRUTlJPV01LV1BYUFk3WUtXVjRKQUJEMllSRUpKTVpOSUtLVlNET1c2WTdIMkpZN0JRIiwiaWF0IjoxNzk2MDczNTY1LCJpc3MiOiJPQVRISFM3T1hCS0FLSE5VRk9MWE9ESzRFVk1TTFEyTFZYV0ZRUUtQSUlUVFc3RU5OVURTQjRWRSIsIm5hbWUiOiJwYXRjaGJheS1ldmVudHMiLCJzdWIiOiJPQVRISFM3T1hCS0FLSE5VRk9MWE9ESzRFVk1TTFEyTFZYV0ZRUUtQSUlUVFc3RU5OVURTQjRWRSIsIm5hdHMiOnsic3lzdGVtX2FjY291bnQiOiJBQktCSTJLVDRWVjZVV0YzRDRLSENEWUFaWTdTR05OTVhFWUtPM0QzQkVWREZGUlBXNUxTV0NMRCIsInR5cGUiOiJvcGVyYXRvciIsInZlcnNpb24iOjJ9fQ.tE3FXCnuiOG8nq9vlonH8b1XOJhPKyReh2rHhTyuK2Fu5US2sGYjMc0smuOb0lX6NTYhjgeUbofEgcmpAgZdDw"),
	natsauth.KeySystemJWT:     []byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJTR0ZTRENWTFlYNlozRzdBRVg3R1ZMUlpCTzY0NFZTUlhVV1FWNlk0SkVISjZLSklMRTZBIiwiaWF0IjoxNzk2MDczNTY1LCJpc3MiOiJPQVRISFM3T1hCS0FLSE5VRk9MWE9ESzRFVk1TTFEyTFZYV0ZRUUtQSUlUVFc3RU5OVURTQjRWRSIsIm5hbWUiOiJTWVMiLCJzdWIiOiJBQktCSTJLVDRWVjZVV0YzRDRLSENEWUFaWTdTR05OTVhFWUtPM0QzQkVWREZGUlBXNUxTV0NMRCIsIm5hdHMiOnsibGltaXRzIjp7InN1YnMiOi0xLCJkYXRhIjotMSwicGF5bG9hZCI6LTEsImltcG9ydHMiOi0xLCJleHBvcnRzIjotMSwid2lsZGNhcmRzIjp0cnVlLCJjb25uIjotMSwibGVhZiI6LTF9LCJkZWZhdWx0X3Blcm1pc3Npb25zIjp7InB1YiI6e30sInN1YiI6e319LCJhdXRob3JpemF0aW9uIjp7fSwidHlwZSI6ImFjY291bnQiLCJ2ZXJzaW9uIjoyfX0.s57qoz0WRnXurealkYjYUq2jq-xZIac3RskUrJIUsngSLYxE0S5_toX2-eCErNB_FJ6JzQvl-gA3UKLlUJbxCA"),
	natsauth.KeyAccountJWT:    []byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiI0U0xEU1BNNUE2REpHU1JRWlk0Rk5CT05DRzdYQ1JZVUgyTFRQSUlESUFEWkRHNkpRQlJRIiwiaWF0IjoxNzk2MDczNTY1LCJpc3MiOiJPQVRISFM3T1hCS0FLSE5VRk9MWE9ESzRFVk1TTFEyTFZYV0ZRUUtQSUlUVFc3RU5OVURTQjRWRSIsIm5hbWUiOiJQQVRDSEJBWSIsInN1YiI6IkFDVlNNV0pTQlFFRkpXT1FDN1JHNTVUUFhURlNJSTNPU0ZKRjdLWTRKNDZFTkRBNVFHREtLT1dSIiwibmF0cyI6eyJsaW1pdHMiOnsic3VicyI6LTEsImRhdGEiOi0xLCJwYXlsb2FkIjotMSwiaW1wb3J0cyI6LTEsImV4cG9ydHMiOi0xLCJ3aWxkY2FyZHMiOnRydWUsImNvbm4iOi0xLCJsZWFmIjotMSwibWVtX3N0b3JhZ2UiOi0xLCJkaXNrX3N0b3JhZ2UiOi0xLCJzdHJlYW1zIjotMSwiY29uc3VtZXIiOi0xfSwiZGVmYXVsdF9wZXJtaXNzaW9ucyI6eyJwdWIiOnt9LCJzdWIiOnt9fSwiYXV0aG9yaXphdGlvbiI6e30sInR5cGUiOiJhY2NvdW50IiwidmVyc2lvbiI6Mn19.x9qKoqKkVWwA_HxMy3D6-xIlDd__n8uY9WtSXJiYe4zkACkyCyIwTWpvodBqbaDZ-2K6ybDUM2SfUlvvCt1pCQ"),
	natsauth.KeyRoutePassword: []byte("pbgoldenroutepassword"),
})
