package render

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
)

func kindNames(objs []client.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s/%s", o.GetObjectKind().GroupVersionKind().Kind, o.GetName()))
	}
	return out
}

func TestWorkflowObjectsAreWhatTheStyleNeeds(t *testing.T) {
	tests := []struct {
		name    string
		fixture func() (*v1alpha1.Workflow, *plan.Plan)
		want    []string
	}{
		{"sync-chain: steps only, a PDB for the replicated step", chainFixture, []string{
			"ConfigMap/quote-sc-plan",
			"Deployment/quote-sc-a", "Service/quote-sc-a", "Deployment/quote-sc-b", "Service/quote-sc-b", "Deployment/quote-sc-c", "Service/quote-sc-c",
			"Service/quote",
			"NetworkPolicy/quote-sc-a", "NetworkPolicy/quote-sc-b", "NetworkPolicy/quote-sc-c",
			"PodDisruptionBudget/quote-sc-b",
		}},
		{"sync-orchestrated: steps and an orchestrator", orchestratedFixture, []string{
			"ConfigMap/checkout-so-plan",
			"Deployment/checkout-so-validate", "Service/checkout-so-validate", "Deployment/checkout-so-charge", "Service/checkout-so-charge",
			"Deployment/checkout-so-reserve", "Service/checkout-so-reserve",
			"Deployment/checkout-so-orchestrator", "Service/checkout-so-orchestrator", "Service/checkout",
			"NetworkPolicy/checkout-so-validate", "NetworkPolicy/checkout-so-charge", "NetworkPolicy/checkout-so-reserve", "NetworkPolicy/checkout-so-orchestrator",
			"PodDisruptionBudget/checkout-so-validate", "PodDisruptionBudget/checkout-so-orchestrator",
		}},
		{"choreography: steps and a gateway", choreographyFixture, []string{
			"ConfigMap/orders-ch-plan",
			"Deployment/orders-ch-reserve", "Service/orders-ch-reserve", "Deployment/orders-ch-charge", "Service/orders-ch-charge",
			"Deployment/orders-ch-gateway", "Service/orders-ch-gateway", "Service/orders",
			"NetworkPolicy/orders-ch-reserve", "NetworkPolicy/orders-ch-charge", "NetworkPolicy/orders-ch-gateway",
			"PodDisruptionBudget/orders-ch-charge", "PodDisruptionBudget/orders-ch-gateway",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, p := tt.fixture()
			got := kindNames(WorkflowObjects(mustInput(t, wf, p)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("children:\n got  %v\n want %v", got, tt.want)
			}
		})
	}
}

func TestEveryChildIsStampedAndOwned(t *testing.T) {
	wf, p := choreographyFixture()
	for _, o := range WorkflowObjects(mustInput(t, wf, p)) {
		ref := metav1.GetControllerOf(o)
		if ref == nil || ref.UID != wf.UID || ref.Kind != "Workflow" || ref.APIVersion != v1alpha1.GroupVersion.String() {
			t.Errorf("%s/%s: controller reference %+v, want the Workflow", o.GetObjectKind().GroupVersionKind().Kind, o.GetName(), ref)
		}
		l := o.GetLabels()
		if l[LabelWorkflow] != wf.Name || l[LabelComponent] == "" || l["app.kubernetes.io/managed-by"] != "patchbay" {
			t.Errorf("%s: labels %v", o.GetName(), l)
		}
		if o.GetNamespace() != wf.Namespace {
			t.Errorf("%s: namespace %q", o.GetName(), o.GetNamespace())
		}
	}
}

// podTemplates returns the pod templates of Deployments and StatefulSets.
func podTemplates(objs []client.Object) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			out[o.Name] = &o.Spec.Template
		case *appsv1.StatefulSet:
			out[o.Name] = &o.Spec.Template
		}
	}
	return out
}

func TestEveryPodIsRestricted(t *testing.T) {
	var objs []client.Object
	for _, f := range []func() (*v1alpha1.Workflow, *plan.Plan){chainFixture, orchestratedFixture, choreographyFixture} {
		wf, p := f()
		objs = append(objs, WorkflowObjects(mustInput(t, wf, p))...)
	}
	objs = append(objs, BrokerObjects(&BrokerInput{Broker: sampleBroker(t), Settings: testSettings, Auth: goldenAuth})...)
	pods := podTemplates(objs)
	if len(pods) < 10 {
		t.Fatalf("only %d pod templates rendered", len(pods))
	}
	for name, tpl := range pods {
		spec := tpl.Spec
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service-account token", name)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod security context %+v is not restricted", name, psc)
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			sc := c.SecurityContext
			ok := sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation &&
				sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem &&
				sc.Capabilities != nil && slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(sc.Capabilities.Add) == 0 &&
				(sc.RunAsUser == nil || *sc.RunAsUser != 0)
			if !ok {
				t.Errorf("%s/%s: container security context %+v is not restricted", name, c.Name, sc)
			}
		}
	}
}

func TestStepPodsRunTheSidecarNatively(t *testing.T) {
	wf, p := orchestratedFixture()
	in := mustInput(t, wf, p)
	for i := range p.Steps {
		d := StepDeployment(in, &p.Steps[i])
		spec := d.Spec.Template.Spec
		if len(spec.InitContainers) != 1 || len(spec.Containers) != 1 {
			t.Fatalf("%s: %d init containers and %d containers, want the sidecar and the app", d.Name, len(spec.InitContainers), len(spec.Containers))
		}
		sc := spec.InitContainers[0]
		if sc.Name != SidecarContainerName || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("%s: %s is not a native sidecar (restartPolicy %v)", d.Name, sc.Name, sc.RestartPolicy)
		}
		if sc.Image != testSettings.RuntimeImage {
			t.Errorf("%s: sidecar image %q, want the settings' %q", d.Name, sc.Image, testSettings.RuntimeImage)
		}
		if !slices.Contains(sc.Args, "--step="+p.Steps[i].Name) || !slices.Contains(sc.Args, "--plan=/etc/patchbay/plan/plan.json") {
			t.Errorf("%s: sidecar args %v", d.Name, sc.Args)
		}
		if got := d.Spec.Template.Annotations[AnnotationPlanHash]; got != in.PlanHash() || got == "" {
			t.Errorf("%s: plan hash annotation %q, want %q", d.Name, got, in.PlanHash())
		}
		if spec.Containers[0].Image != wf.Spec.Steps[i].Image {
			t.Errorf("%s: app image %q", d.Name, spec.Containers[0].Image)
		}
		var planMounted bool
		for _, v := range spec.Volumes {
			planMounted = planMounted || (v.ConfigMap != nil && v.ConfigMap.Name == "checkout-so-plan")
			if v.Secret != nil {
				t.Errorf("%s: a sync workflow mounts Secret %s", d.Name, v.Secret.SecretName)
			}
		}
		if !planMounted {
			t.Errorf("%s: the plan ConfigMap is not mounted", d.Name)
		}
		if *d.Spec.Replicas != p.Steps[i].Replicas {
			t.Errorf("%s: replicas %d, want %d", d.Name, *d.Spec.Replicas, p.Steps[i].Replicas)
		}
	}
}

func TestAPlanChangeRollsThePods(t *testing.T) {
	wf, p := orchestratedFixture()
	before := StepDeployment(mustInput(t, wf, p), &p.Steps[0]).Spec.Template.Annotations[AnnotationPlanHash]
	p.Steps[0].Policy.Timeout = plan.D(p.Steps[0].Policy.Timeout.Duration * 2)
	after := StepDeployment(mustInput(t, wf, p), &p.Steps[0]).Spec.Template.Annotations[AnnotationPlanHash]
	if before == after {
		t.Errorf("plan hash %q did not change with the plan", before)
	}
}

func TestBrokerClientsMountTheirWorkflowsCredentials(t *testing.T) {
	wf, p := choreographyFixture()
	in := mustInput(t, wf, p)
	in.NATSCredentialsHash = CredentialsHash([]byte("one"))
	for name, tpl := range podTemplates(WorkflowObjects(in)) {
		if got := tpl.Annotations[AnnotationNATSCredentialsHash]; got != in.NATSCredentialsHash {
			t.Errorf("%s: credentials hash %q, want %q", name, got, in.NATSCredentialsHash)
		}
		if tpl.Labels[LabelBrokerClient] != "events" {
			t.Errorf("%s: pods lack %s=events", name, LabelBrokerClient)
		}
		var mounted bool
		for _, v := range tpl.Spec.Volumes {
			mounted = mounted || (v.Secret != nil && v.Secret.SecretName == WorkflowCredentialsSecretName(wf.Name))
			if v.Secret != nil && strings.HasPrefix(v.Secret.SecretName, "events-") {
				t.Errorf("%s: mounts the Broker's Secret %s", name, v.Secret.SecretName)
			}
		}
		if !mounted {
			t.Errorf("%s: the workflow's credentials Secret is not mounted", name)
		}
		for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
			runtime := c.Image == testSettings.RuntimeImage
			if runtime != slices.Contains(c.Args, "--nats-url=nats://events-nats.default.svc:4222") {
				t.Errorf("%s/%s: args %v: only runtime containers get the broker URL", name, c.Name, c.Args)
			}
			var mountsCreds bool
			for _, m := range c.VolumeMounts {
				mountsCreds = mountsCreds || m.Name == natsVolume
			}
			if mountsCreds != runtime {
				t.Errorf("%s/%s: mounts the credentials: %v, want only the runtime", name, c.Name, mountsCreds)
			}
		}
	}
}

func TestServicesServeHTTPOnPort80(t *testing.T) {
	wf, p := orchestratedFixture()
	for _, o := range WorkflowObjects(mustInput(t, wf, p)) {
		svc, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		want := int32(plan.SidecarPort)
		if svc.Name == "checkout-so-orchestrator" || svc.Name == "checkout" {
			want = plan.ComponentPort
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.IntVal != want {
			t.Errorf("%s: ports %+v, want 80 → %d", svc.Name, svc.Spec.Ports, want)
		}
	}
}

func TestStepNetworkPolicyAdmitsOnlyItsCallers(t *testing.T) {
	ingressOn := func(np *networkingv1.NetworkPolicy, port int32) (rules []networkingv1.NetworkPolicyIngressRule) {
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if p.Port.IntVal == port {
					rules = append(rules, r)
				}
			}
		}
		return rules
	}
	tests := []struct {
		name    string
		fixture func() (*v1alpha1.Workflow, *plan.Plan)
		step    string
		// from lists the selectors admitted to the inbound port; nil means everyone, empty no one.
		from []map[string]string
	}{
		{"the entry of a chain admits everyone", chainFixture, "a", nil},
		{"a chained step admits its predecessor", chainFixture, "b", []map[string]string{
			{LabelWorkflow: "quote", LabelComponent: ComponentStep, LabelStep: "a", LabelStyle: "sc"},
		}},
		{"an orchestrated step admits the orchestrator", orchestratedFixture, "charge", []map[string]string{
			{LabelWorkflow: "checkout", LabelComponent: ComponentOrchestrator, LabelStyle: "so"},
		}},
		{"an event-driven step admits no one", choreographyFixture, "charge", []map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf, p := tt.fixture()
			np := stepNetworkPolicy(mustInput(t, wf, p), p.Step(tt.step))
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
				t.Errorf("policy types %v", np.Spec.PolicyTypes)
			}
			rules := ingressOn(np, plan.SidecarPort)
			switch {
			case tt.from == nil:
				if len(rules) != 1 || rules[0].From != nil {
					t.Errorf("inbound rules %+v, want one from everyone", rules)
				}
			case len(tt.from) == 0:
				if len(rules) != 0 {
					t.Errorf("inbound rules %+v, want none", rules)
				}
			default:
				var got []map[string]string
				for _, r := range rules {
					for _, f := range r.From {
						got = append(got, f.PodSelector.MatchLabels)
					}
				}
				if !reflect.DeepEqual(got, tt.from) {
					t.Errorf("inbound from %v, want %v", got, tt.from)
				}
			}
			if admin := ingressOn(np, plan.SidecarAdminPort); len(admin) != 1 || admin[0].From != nil {
				t.Errorf("admin port rules %+v, want one from everyone", admin)
			}
		})
	}
}

func TestComponentNetworkPolicyEgress(t *testing.T) {
	wf, p := orchestratedFixture()
	np := componentNetworkPolicy(mustInput(t, wf, p), ComponentOrchestrator)
	var steps []string
	var dns bool
	for _, r := range np.Spec.Egress {
		for _, port := range r.Ports {
			dns = dns || port.Port.IntVal == 53
		}
		for _, to := range r.To {
			steps = append(steps, to.PodSelector.MatchLabels[LabelStep])
		}
	}
	if !dns || !slices.Equal(steps, []string{"validate", "charge", "reserve"}) {
		t.Errorf("egress %+v: want DNS and the three steps", np.Spec.Egress)
	}
}

// TestEntryServiceFollowsTheStyle pins the stable entry: one Service named
// after the Workflow whose selector picks the pods that take callers in the
// style, so a style switch moves its selector and never its address.
func TestEntryServiceFollowsTheStyle(t *testing.T) {
	for _, tt := range []struct {
		sample, component, step string
		port                    int32
	}{
		{"sync-chain", ComponentStep, "cart", plan.SidecarPort},
		{"sync-orchestrated", ComponentOrchestrator, "", plan.ComponentPort},
		{"async-orchestrated", ComponentGateway, "", plan.ComponentPort},
		{"choreography", ComponentGateway, "", plan.ComponentPort},
		{"hybrid", ComponentGateway, "", plan.ComponentPort},
	} {
		t.Run(tt.sample, func(t *testing.T) {
			in := sampleInput(t, tt.sample+".yaml")
			svc := EntryService(in)
			if svc.Name != in.Workflow.Name || in.Plan.Entry.Service != in.Workflow.Name {
				t.Errorf("entry Service %s, plan entry %s: want both named %s", svc.Name, in.Plan.Entry.Service, in.Workflow.Name)
			}
			want := selectorLabels(in.owner(), tt.component, tt.step)
			if !maps.Equal(svc.Spec.Selector, want) || want[LabelStyle] != in.Workflow.Spec.Style.Code() {
				t.Errorf("selector %v, want %v, of the style %s", svc.Spec.Selector, want, in.Workflow.Spec.Style.Code())
			}
			if _, ok := svc.Labels[LabelStyle]; ok {
				t.Errorf("labels %v: the entry belongs to no style", svc.Labels)
			}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != plan.ServicePort || svc.Spec.Ports[0].TargetPort.IntVal != tt.port {
				t.Errorf("ports %+v, want %d → %d", svc.Spec.Ports, plan.ServicePort, tt.port)
			}
		})
	}
}

// TestComponentNetworkPolicyIngress pins who may call a component: callers on
// the entry's port when it is the entry, nobody when it is an async
// orchestrator that the gateway fronts.
func TestComponentNetworkPolicyIngress(t *testing.T) {
	for _, tt := range []struct {
		sample, component string
		wantOpen          bool
	}{
		{"sync-orchestrated", ComponentOrchestrator, true},
		{"async-orchestrated", ComponentGateway, true},
		{"async-orchestrated", ComponentOrchestrator, false},
		{"hybrid", ComponentGateway, true},
		{"hybrid", ComponentOrchestrator, false},
		{"choreography", ComponentGateway, true},
	} {
		t.Run(tt.sample+"/"+tt.component, func(t *testing.T) {
			in := sampleInput(t, tt.sample+".yaml")
			np := componentNetworkPolicy(in, tt.component)
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				t.Fatalf("policy types %v: ingress must be restricted", np.Spec.PolicyTypes)
			}
			open := len(np.Spec.Ingress) == 1 && len(np.Spec.Ingress[0].From) == 0 &&
				len(np.Spec.Ingress[0].Ports) == 1 && np.Spec.Ingress[0].Ports[0].Port.IntVal == plan.ComponentPort
			if open != tt.wantOpen || (!tt.wantOpen && len(np.Spec.Ingress) != 0) {
				t.Errorf("ingress %+v, want open to all on %d: %v", np.Spec.Ingress, plan.ComponentPort, tt.wantOpen)
			}
		})
	}
}

func TestNewWorkflowInputRejectsAForeignPlan(t *testing.T) {
	wf, p := orchestratedFixture()
	p.Workflow = "other"
	if _, err := NewWorkflowInput(wf, p, testSettings); err == nil || !strings.Contains(err.Error(), "other") {
		t.Errorf("err = %v, want a plan mismatch", err)
	}
}

// TestRuntimePodsShutDownGracefully checks that every runtime container keeps
// serving while its endpoints drain and that its pod has the time to finish:
// the shutdown delay plus the runtime's drain timeout, both passed to every
// runtime container. A step's pod also has the time for its app's preStop
// hook (which drains the sidecar for up to the same delay and timeout), then
// for the app and the drained sidecar to exit.
func TestRuntimePodsShutDownGracefully(t *testing.T) {
	const shutdownDelay, drainTimeout, appExit, sidecarExit = 5, 30, 10, 5
	for _, fixture := range []func() (*v1alpha1.Workflow, *plan.Plan){chainFixture, orchestratedFixture, choreographyFixture} {
		wf, p := fixture()
		for name, tpl := range podTemplates(WorkflowObjects(mustInput(t, wf, p))) {
			want := int64(shutdownDelay + drainTimeout)
			if tpl.Labels[LabelComponent] == ComponentStep {
				want += appExit + sidecarExit
			}
			grace := tpl.Spec.TerminationGracePeriodSeconds
			if grace == nil || *grace < want {
				t.Errorf("%s: terminationGracePeriodSeconds %v, want at least %d", name, grace, want)
			}
			for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
				runtime := c.Image == testSettings.RuntimeImage
				for _, arg := range []string{"--shutdown-delay=5s", "--drain-timeout=30s"} {
					if runtime != slices.Contains(c.Args, arg) {
						t.Errorf("%s/%s: args %v: every runtime container, and only those, get %s", name, c.Name, c.Args, arg)
					}
				}
			}
		}
	}
}

// The measured bug: Kubernetes stops a pod's app before its native sidecar,
// so the sidecar kept feeding an app that was gone. Every step's app
// container has a preStop hook that drains its sidecar (GET /drain on the
// sidecar's admin port) before the app gets SIGTERM; no other container has one.
func TestStepAppsDrainTheirSidecarBeforeStopping(t *testing.T) {
	for _, file := range sampleWorkflows {
		in := sampleInput(t, file)
		steps := 0
		for name, tpl := range podTemplates(WorkflowObjects(in)) {
			for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
				hook := c.Lifecycle != nil && c.Lifecycle.PreStop != nil
				if c.Name != AppContainerName || tpl.Labels[LabelComponent] != ComponentStep {
					if hook {
						t.Errorf("%s: %s/%s has a preStop hook %+v, want none", file, name, c.Name, c.Lifecycle.PreStop)
					}
					continue
				}
				steps++
				if !hook || c.Lifecycle.PreStop.HTTPGet == nil {
					t.Errorf("%s: %s/%s: lifecycle %+v, want a preStop httpGet", file, name, c.Name, c.Lifecycle)
					continue
				}
				get := c.Lifecycle.PreStop.HTTPGet
				if get.Path != "/drain" || get.Port.IntValue() != plan.SidecarAdminPort || get.Scheme != corev1.URISchemeHTTP || get.Host != "" {
					t.Errorf("%s: %s/%s: preStop %+v, want GET http://<pod IP>:%d/drain", file, name, c.Name, get, plan.SidecarAdminPort)
				}
				sidecar := tpl.Spec.InitContainers[0]
				if sidecar.Name != SidecarContainerName || !slices.ContainsFunc(sidecar.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == plan.SidecarAdminPort }) {
					t.Errorf("%s: %s: the hook's port %d is not the sidecar's admin port: %+v", file, name, plan.SidecarAdminPort, sidecar.Ports)
				}
			}
		}
		if steps == 0 {
			t.Errorf("%s: no step app container", file)
		}
	}
}

func TestRuntimeStoresStreamsAsTheBrokerDoes(t *testing.T) {
	wf, p := choreographyFixture()
	streamArgs := func(in *WorkflowInput) map[string][]string {
		out := map[string][]string{}
		for name, tpl := range podTemplates(WorkflowObjects(in)) {
			for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
				for _, a := range c.Args {
					if strings.HasPrefix(a, "--stream-") {
						out[name+"/"+c.Name] = append(out[name+"/"+c.Name], a)
					}
				}
			}
		}
		return out
	}
	if got := streamArgs(mustInput(t, wf, p)); len(got) != 0 {
		t.Errorf("without a Broker: stream args %v, want none", got)
	}
	in := mustInput(t, wf, p)
	in.Streams = BrokerStreams(broker("events", 3, &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}))
	got := streamArgs(in)
	want := []string{"--stream-replicas=3", "--stream-storage=memory"}
	for _, c := range []string{"orders-ch-reserve/" + SidecarContainerName, "orders-ch-charge/" + SidecarContainerName, "orders-ch-gateway/gateway"} {
		if !slices.Equal(got[c], want) {
			t.Errorf("%s: stream args %v, want %v", c, got[c], want)
		}
	}
	if len(got) != 3 {
		t.Errorf("stream args on %v, want only the runtime containers", got)
	}

	sync, sp := orchestratedFixture()
	in = mustInput(t, sync, sp)
	in.Streams = BrokerStreams(broker("default", 3, nil))
	if got := streamArgs(in); len(got) != 0 {
		t.Errorf("a sync style: stream args %v, want none", got)
	}
}

// Every patchbay-runtime container (sidecar, orchestrator, gateway) of every
// style has a startup probe on /healthz with a budget of at least two
// minutes, liveness on /healthz with sane thresholds, and readiness on
// /readyz: liveness never waits for the broker, readiness does.
func TestRuntimeContainersProbeHealthAndReadiness(t *testing.T) {
	const minStartupBudget = 2 * 60 // seconds
	for _, file := range sampleWorkflows {
		in := sampleInput(t, file)
		seen := 0
		for name, tpl := range podTemplates(WorkflowObjects(in)) {
			for _, c := range slices.Concat(tpl.Spec.InitContainers, tpl.Spec.Containers) {
				if c.Image != testSettings.RuntimeImage {
					continue
				}
				seen++
				at := fmt.Sprintf("%s %s/%s", file, name, c.Name)
				port := int32(plan.ComponentPort)
				if c.Name == SidecarContainerName {
					port = plan.SidecarAdminPort
				}
				for kind, want := range map[string]struct {
					probe *corev1.Probe
					path  string
				}{"startup": {c.StartupProbe, "/healthz"}, "liveness": {c.LivenessProbe, "/healthz"}, "readiness": {c.ReadinessProbe, "/readyz"}} {
					p := want.probe
					if p == nil || p.HTTPGet == nil {
						t.Errorf("%s: no HTTP %s probe", at, kind)
						continue
					}
					if p.HTTPGet.Path != want.path || p.HTTPGet.Port.IntVal != port {
						t.Errorf("%s: %s probe on %s:%s, want %s:%d", at, kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), want.path, port)
					}
				}
				if s := c.StartupProbe; s != nil {
					if budget := s.PeriodSeconds * s.FailureThreshold; budget < minStartupBudget {
						t.Errorf("%s: startup budget %ds (period %d × failureThreshold %d), want at least %ds", at, budget, s.PeriodSeconds, s.FailureThreshold, minStartupBudget)
					}
					if s.SuccessThreshold != 1 {
						t.Errorf("%s: startup successThreshold %d, want 1", at, s.SuccessThreshold)
					}
				}
				if l := c.LivenessProbe; l != nil && (l.FailureThreshold < 3 || l.PeriodSeconds < 10 || l.TimeoutSeconds < 5) {
					t.Errorf("%s: liveness period %ds, timeout %ds, failureThreshold %d: want at least 10s, 5s and 3", at, l.PeriodSeconds, l.TimeoutSeconds, l.FailureThreshold)
				}
			}
		}
		if seen == 0 {
			t.Errorf("%s: no runtime container", file)
		}
	}
}
