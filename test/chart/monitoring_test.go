package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/controllers"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/plan"
	pbrender "github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

// The prometheus-operator fields the chart sets; decoding is strict, so a
// field the chart renders and these lack fails the test.
type monitorMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

type endpoint struct {
	Port          string `json:"port"`
	Path          string `json:"path"`
	Scheme        string `json:"scheme"`
	Interval      string `json:"interval"`
	ScrapeTimeout string `json:"scrapeTimeout"`
	Relabelings   []struct {
		SourceLabels []string `json:"sourceLabels"`
		TargetLabel  string   `json:"targetLabel"`
	} `json:"relabelings"`
}

// monitorObject is the head of a ServiceMonitor and a PodMonitor.
type monitorObject struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   monitorMeta `json:"metadata"`
}

type serviceMonitor struct {
	monitorObject
	Spec struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []endpoint `json:"endpoints"`
	} `json:"spec"`
}

type podMonitor struct {
	monitorObject
	Spec struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			Any        bool     `json:"any"`
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		PodMetricsEndpoints []endpoint `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

const (
	serviceMonitorKey = "ServiceMonitor/pb-patchbay-manager"
	sidecarsKey       = "PodMonitor/pb-patchbay-runtime-sidecars"
	componentsKey     = "PodMonitor/pb-patchbay-runtime-components"
	dashboardKey      = "ConfigMap/pb-patchbay-dashboard"
)

// The monitors and the dashboard are opt-in: nothing of them by default, each
// alone when enabled alone.
func TestChartMonitoringIsOptIn(t *testing.T) {
	all := []string{serviceMonitorKey, sidecarsKey, componentsKey, dashboardKey}
	for _, tc := range []struct {
		set  []string
		want []string
	}{
		{nil, nil},
		{[]string{"metrics.serviceMonitor.enabled=true"}, []string{serviceMonitorKey}},
		{[]string{"metrics.podMonitor.enabled=true"}, []string{sidecarsKey, componentsKey}},
		{[]string{"grafana.dashboard.enabled=true"}, []string{dashboardKey}},
	} {
		var args []string
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		objs := render(t, args...)
		for _, key := range all {
			if _, got := objs[key]; got != slices.Contains(tc.want, key) {
				t.Errorf("--set %v: %s rendered: %v, want %v", tc.set, key, got, !got)
			}
		}
	}
}

// The ServiceMonitor scrapes the manager's metrics Service, by its labels and
// its port's name, in the release namespace.
func TestChartServiceMonitor(t *testing.T) {
	objs := render(t, "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "metrics.serviceMonitor.labels.release=kps", "--set", "metrics.serviceMonitor.interval=30s")
	var sm serviceMonitor
	objs.decode(t, serviceMonitorKey, &sm)
	var svc corev1.Service
	objs.decode(t, "Service/pb-patchbay-metrics", &svc)

	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Metadata.Namespace != "patchbay-system" || sm.Metadata.Labels["release"] != "kps" {
		t.Errorf("ServiceMonitor %s %+v", sm.APIVersion, sm.Metadata)
	}
	sel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(svc.Labels)) {
		t.Errorf("selector %v (%v) does not select the metrics Service, labelled %v", sel, err, svc.Labels)
	}
	if !slices.Equal(sm.Spec.NamespaceSelector.MatchNames, []string{"patchbay-system"}) {
		t.Errorf("namespaceSelector %v", sm.Spec.NamespaceSelector.MatchNames)
	}
	if len(sm.Spec.Endpoints) != 1 || len(svc.Spec.Ports) != 1 {
		t.Fatalf("endpoints %+v, Service ports %+v", sm.Spec.Endpoints, svc.Spec.Ports)
	}
	if ep := sm.Spec.Endpoints[0]; ep.Port != svc.Spec.Ports[0].Name || ep.Path != "/metrics" || ep.Interval != "30s" {
		t.Errorf("endpoint %+v, want port %s, path /metrics, interval 30s", ep, svc.Spec.Ports[0].Name)
	}

	out := helmFails(t, "template", "pb", chartDir, "--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true")
	if !strings.Contains(out, "metrics.serviceMonitor.enabled needs metrics.enabled") {
		t.Errorf("a ServiceMonitor without the metrics Service: %s", out)
	}
}

// runtimePods are the pod templates internal/render makes for every sample
// Workflow and the sample Broker, as the manager deploys them.
func runtimePods(t *testing.T) map[string]corev1.PodTemplateSpec {
	t.Helper()
	settings := pbrender.Settings{RuntimeImage: "runtime:test", NATSImage: controllers.DefaultNATSImage, ComponentReplicas: 2}
	pods := map[string]corev1.PodTemplateSpec{}
	for _, file := range []string{"sync-chain.yaml", "sync-orchestrated.yaml", "async-orchestrated.yaml", "choreography.yaml", "hybrid.yaml"} {
		var wf v1alpha1.Workflow
		readYAML(t, "config/samples/"+file, &wf)
		wf.Namespace = "shop"
		p, err := topology.Compile(&wf)
		if err != nil {
			t.Fatalf("compile %s: %v", file, err)
		}
		in, err := pbrender.NewWorkflowInput(&wf, p, settings)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range pbrender.WorkflowObjects(in) {
			if d, ok := obj.(*appsv1.Deployment); ok {
				pods[file+" "+d.Name] = d.Spec.Template
			}
		}
	}
	var b v1alpha1.Broker
	readYAML(t, "config/samples/broker.yaml", &b)
	b.Namespace = "shop"
	sts := pbrender.NATSStatefulSet(&pbrender.BrokerInput{Broker: &b, Settings: settings, Auth: mustAuth(t)})
	pods["broker.yaml "+sts.Name] = sts.Spec.Template
	return pods
}

// The PodMonitors select the pods internal/render makes, in any namespace, by
// the labels it stamps: the step pods' sidecar on its admin port (15090), the
// orchestrators and gateways on their http port (8080); never the NATS pods,
// and never a step pod's http port (the sidecar's inbound proxy) or app port.
func TestChartPodMonitors(t *testing.T) {
	objs := render(t, "--set", "metrics.podMonitor.enabled=true",
		"--set", "metrics.podMonitor.labels.release=kps", "--set", "metrics.podMonitor.interval=15s")
	want := map[string]struct {
		key        string
		components []string
		container  func(corev1.PodSpec) []corev1.Container
		port       int32
	}{
		"sidecars": {sidecarsKey, []string{pbrender.ComponentStep},
			func(s corev1.PodSpec) []corev1.Container { return s.InitContainers }, plan.SidecarAdminPort},
		"components": {componentsKey, []string{pbrender.ComponentOrchestrator, pbrender.ComponentGateway},
			func(s corev1.PodSpec) []corev1.Container { return s.Containers }, plan.ComponentPort},
	}
	pods := runtimePods(t)
	selected := map[string]string{} // pod -> monitor
	for name, w := range want {
		var pm podMonitor
		objs.decode(t, w.key, &pm)
		if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Metadata.Namespace != "patchbay-system" || pm.Metadata.Labels["release"] != "kps" {
			t.Errorf("%s: %s %+v", name, pm.APIVersion, pm.Metadata)
		}
		if !pm.Spec.NamespaceSelector.Any {
			t.Errorf("%s: namespaceSelector is not any", name)
		}
		if len(pm.Spec.PodMetricsEndpoints) != 1 {
			t.Fatalf("%s: endpoints %+v", name, pm.Spec.PodMetricsEndpoints)
		}
		ep := pm.Spec.PodMetricsEndpoints[0]
		if ep.Path != "/metrics" || ep.Interval != "15s" {
			t.Errorf("%s: endpoint %+v", name, ep)
		}
		relabeled := map[string]string{}
		for _, r := range ep.Relabelings {
			relabeled[r.TargetLabel] = strings.Join(r.SourceLabels, ",")
		}
		if relabeled["workflow"] != "__meta_kubernetes_pod_label_patchbay_dev_workflow" {
			t.Errorf("%s: the targets get no workflow label from the pod's %s (the dashboard filters by it): %v", name, pbrender.LabelWorkflow, relabeled)
		}
		sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
		if err != nil || sel.Empty() {
			t.Fatalf("%s: selector %v: %v", name, sel, err)
		}
		for pod, tmpl := range pods {
			if !sel.Matches(labels.Set(tmpl.Labels)) {
				continue
			}
			if other, dup := selected[pod]; dup {
				t.Errorf("%s is selected by %s and %s: scraped twice", pod, other, name)
			}
			selected[pod] = name
			if !slices.Contains(w.components, tmpl.Labels[pbrender.LabelComponent]) {
				t.Errorf("%s selects %s, a %s pod", name, pod, tmpl.Labels[pbrender.LabelComponent])
			}
			// The port the endpoint names is the metrics port, on exactly one
			// container of the pod.
			var ports []string
			for _, c := range append(slices.Clone(tmpl.Spec.InitContainers), tmpl.Spec.Containers...) {
				for _, p := range c.Ports {
					if p.Name == ep.Port {
						ports = append(ports, fmt.Sprintf("%s:%d", c.Name, p.ContainerPort))
					}
				}
			}
			var wantPorts []string
			for _, c := range w.container(tmpl.Spec) {
				if c.Name == pbrender.AppContainerName {
					continue
				}
				wantPorts = append(wantPorts, fmt.Sprintf("%s:%d", c.Name, w.port))
			}
			if !slices.Equal(ports, wantPorts) {
				t.Errorf("%s: port %q of %s is %v, want %v", name, ep.Port, pod, ports, wantPorts)
			}
		}
	}
	for pod, tmpl := range pods {
		_, got := selected[pod]
		if wantIt := tmpl.Labels[pbrender.LabelComponent] != pbrender.ComponentNATS; got != wantIt {
			t.Errorf("%s (component %s) selected: %v, want %v", pod, tmpl.Labels[pbrender.LabelComponent], got, wantIt)
		}
	}
	seen := map[string]bool{}
	for pod := range selected {
		seen[pods[pod].Labels[pbrender.LabelComponent]] = true
	}
	for _, c := range []string{pbrender.ComponentStep, pbrender.ComponentOrchestrator, pbrender.ComponentGateway} {
		if !seen[c] {
			t.Errorf("no sample renders a %s pod: the test checks nothing for it", c)
		}
	}
}

// collector records what is registered with it.
type collector struct{ cs []prometheus.Collector }

func (c *collector) Register(x prometheus.Collector) error   { c.cs = append(c.cs, x); return nil }
func (c *collector) MustRegister(xs ...prometheus.Collector) { c.cs = append(c.cs, xs...) }
func (c *collector) Unregister(prometheus.Collector) bool    { return false }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// runtimeMetrics are the patchbay_ metrics a runtime process registers
// (telemetry.NewMetrics and the breaker registry, as telemetry.New does), by
// name, with whether each is a histogram.
func runtimeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	var c collector
	telemetry.NewMetrics(&c)
	c.cs = append(c.cs, resilience.NewRegistry())
	names := map[string]bool{}
	for _, x := range c.cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { x.Describe(ch); close(ch) }()
		for d := range ch {
			n := fqName.FindStringSubmatch(d.String())
			if n == nil {
				t.Fatalf("no fqName in %s", d)
			}
			names[n[1]] = false
		}
	}
	// A vector shows its type once it has a child: make one of each.
	reg := prometheus.NewRegistry()
	m := telemetry.NewMetrics(reg)
	m.Inbound("s").Done(200, time.Now())
	m.Hop(resilience.EdgeName{From: "a", To: "b"}).Done(true, 1, time.Now())
	m.Run("w").Done(true, time.Now())
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			names[f.GetName()] = true
		}
	}
	return names
}

// dashboardQueries are the PromQL expressions of the dashboard: the panels'
// targets and the template variables' queries.
func dashboardQueries(t *testing.T, dashboard []byte) []string {
	t.Helper()
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboard, &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("the dashboard has no title or uid")
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		if !ok || s == "" {
			t.Errorf("variable %s has no query", v.Name)
		}
		exprs = append(exprs, s)
	}
	for _, v := range []string{"datasource", "namespace", "workflow"} {
		if !slices.Contains(vars, v) {
			t.Errorf("the dashboard has no $%s variable; it has %v", v, vars)
		}
	}
	return exprs
}

var metricName = regexp.MustCompile(`\bpatchbay_[a-z0-9_]+\b`)

// Every metric the dashboard queries is one the runtime registers (a
// histogram's through its _bucket, _sum or _count series), and every metric
// the runtime registers has a panel.
func TestChartDashboard(t *testing.T) {
	file, err := os.ReadFile(filepath.Join(chartDir, "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	registered := runtimeMetrics(t)
	if len(registered) < 10 {
		t.Fatalf("found only %v registered metrics", registered)
	}
	used := map[string]bool{}
	for _, expr := range dashboardQueries(t, file) {
		names := metricName.FindAllString(expr, -1)
		if len(names) == 0 {
			t.Errorf("query %q uses no patchbay metric", expr)
		}
		for _, n := range names {
			base := n
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(n, suffix); ok && registered[b] {
					base = b
				}
			}
			if _, ok := registered[base]; !ok {
				t.Errorf("the dashboard queries %s, which the runtime does not register (query %q)", n, expr)
				continue
			}
			if registered[base] && base == n {
				t.Errorf("the dashboard queries histogram %s without _bucket, _sum or _count (query %q)", n, expr)
			}
			used[base] = true
		}
		if strings.Contains(expr, "histogram_quantile") && !strings.Contains(expr, "_bucket") {
			t.Errorf("histogram_quantile over no buckets: %q", expr)
		}
	}
	for n := range registered {
		if !used[n] {
			t.Errorf("the runtime registers %s, which no dashboard panel shows", n)
		}
	}

	// The chart ships the file unchanged, in a ConfigMap the Grafana sidecar
	// picks up by its label.
	objs := render(t, "--set", "grafana.dashboard.enabled=true", "--set", "grafana.dashboard.annotations.grafana_folder=patchbay")
	var cm corev1.ConfigMap
	objs.decode(t, dashboardKey, &cm)
	if cm.Labels["grafana_dashboard"] != "1" || cm.Annotations["grafana_folder"] != "patchbay" || cm.Namespace != "patchbay-system" {
		t.Errorf("dashboard ConfigMap %s/%s labels %v annotations %v", cm.Namespace, cm.Name, cm.Labels, cm.Annotations)
	}
	if len(cm.Data) != 1 {
		t.Fatalf("dashboard ConfigMap data keys %d, want 1", len(cm.Data))
	}
	for key, data := range cm.Data {
		if !strings.HasSuffix(key, ".json") {
			t.Errorf("data key %s: the sidecar loads *.json", key)
		}
		if strings.TrimSpace(data) != strings.TrimSpace(string(file)) {
			t.Errorf("the ConfigMap's %s differs from files/dashboard.json", key)
		}
	}

	objs = render(t, "--set", "grafana.dashboard.enabled=true", "--set", "grafana.dashboard.labels.grafana_dashboard=null",
		"--set", "grafana.dashboard.labels.dashboards=patchbay", "--set", "grafana.dashboard.namespace=monitoring")
	cm = corev1.ConfigMap{}
	objs.decode(t, "ConfigMap/monitoring/pb-patchbay-dashboard", &cm)
	if _, ok := cm.Labels["grafana_dashboard"]; ok || cm.Labels["dashboards"] != "patchbay" || cm.Namespace != "monitoring" {
		t.Errorf("custom label and namespace: %s labels %v", cm.Namespace, cm.Labels)
	}
}

func mustAuth(t *testing.T) *natsauth.Broker {
	t.Helper()
	a, err := natsauth.NewBroker("test", "pbtestroutepassword")
	if err != nil {
		t.Fatal(err)
	}
	return a
}
