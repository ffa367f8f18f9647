package chart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/patchbay-dev/patchbay/controllers"
	"github.com/patchbay-dev/patchbay/test/clustertest"
)

// root is the repository's root directory.
var root = clustertest.Root

var chartDir = filepath.Join(root, "charts", "patchbay")

// helmBinary finds helm: $HELM (make test and make chart-lint set it to the
// one built into bin/), else the PATH.
func helmBinary(t *testing.T) string {
	t.Helper()
	if h := os.Getenv("HELM"); h != "" {
		return h
	}
	if h, err := exec.LookPath("helm"); err == nil {
		return h
	}
	t.Fatal("helm not found: run make test or make chart-lint, which build it into bin/, or set HELM")
	return ""
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// helmFails runs helm, expects it to fail and returns what it printed.
func helmFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(helmBinary(t), args...).CombinedOutput()
	if err == nil {
		t.Fatalf("helm %s succeeded, want an error\n%s", strings.Join(args, " "), out)
	}
	if exitErr := (*exec.ExitError)(nil); !errors.As(err, &exitErr) {
		t.Fatalf("helm %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// rendered is what `helm template` produced, by "Kind/name", or by
// "Kind/namespace/name" for an object in a namespace other than the release's.
type rendered map[string][]byte

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out := helm(t, append([]string{"template", "pb", chartDir, "--namespace", "patchbay-system", "--include-crds"}, args...)...)
	objs := rendered{}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue
		}
		key := meta.Kind + "/" + meta.Metadata.Name
		if ns := meta.Metadata.Namespace; ns != "" && ns != "patchbay-system" {
			key = meta.Kind + "/" + ns + "/" + meta.Metadata.Name
		}
		if _, dup := objs[key]; dup {
			t.Fatalf("%s is rendered twice", key)
		}
		objs[key] = []byte(doc)
	}
	return objs
}

func (r rendered) decode(t *testing.T, key string, into any) {
	t.Helper()
	doc, ok := r[key]
	if !ok {
		t.Fatalf("%s is not rendered; rendered: %v", key, r.keys())
	}
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

func (r rendered) keys() []string {
	var keys []string
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestChartLints(t *testing.T) {
	helm(t, "lint", "--strict", chartDir)
}

func TestChartRendersTheDefaultObjects(t *testing.T) {
	got := render(t).keys()
	want := []string{
		"ClusterRole/pb-patchbay-manager",
		"ClusterRoleBinding/pb-patchbay-manager",
		"CustomResourceDefinition/brokers.patchbay.dev",
		"CustomResourceDefinition/workflows.patchbay.dev",
		"Deployment/pb-patchbay-manager",
		"Role/pb-patchbay-leader-election",
		"RoleBinding/pb-patchbay-leader-election",
		"Service/pb-patchbay-metrics",
		"ServiceAccount/pb-patchbay",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rendered objects:\n got %v\nwant %v", got, want)
	}
}

// The chart's CRDs are the generated ones, unchanged.
func TestChartCRDsAreConfigCRDs(t *testing.T) {
	objs := render(t)
	for _, name := range []string{"brokers", "workflows"} {
		var want, got apiextensionsv1.CustomResourceDefinition
		readYAML(t, "config/crd/bases/patchbay.dev_"+name+".yaml", &want)
		objs.decode(t, "CustomResourceDefinition/"+name+".patchbay.dev", &got)
		if !equality.Semantic.DeepEqual(got, want) {
			t.Errorf("the chart's %s CRD differs from config/crd/bases: run make manifests", name)
		}
	}
}

// The manager gets exactly the rules controller-gen derived from its markers.
func TestChartClusterRoleIsConfigRole(t *testing.T) {
	var want, got rbacv1.ClusterRole
	readYAML(t, "config/rbac/role.yaml", &want)
	render(t).decode(t, "ClusterRole/pb-patchbay-manager", &got)
	if !equality.Semantic.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("the chart's ClusterRole rules differ from config/rbac/role.yaml: run make manifests\n got %v\nwant %v", got.Rules, want.Rules)
	}
	var binding rbacv1.ClusterRoleBinding
	render(t).decode(t, "ClusterRoleBinding/pb-patchbay-manager", &binding)
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: "pb-patchbay", Namespace: "patchbay-system"}
	if len(binding.Subjects) != 1 || binding.Subjects[0] != wantSubject || binding.RoleRef.Name != got.Name {
		t.Errorf("ClusterRoleBinding binds %v to %s, want %v to %s", binding.Subjects, binding.RoleRef.Name, wantSubject, got.Name)
	}
}

// appVersion is the manager's release: the default tag of the manager and
// runtime images, which is what the manager itself deploys by default.
func TestChartAppVersionIsTheManagerVersion(t *testing.T) {
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, "charts/patchbay/Chart.yaml", &chart)
	mainGo, err := os.ReadFile(filepath.Join(root, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^var version = "([^"]+)"`).FindSubmatch(mainGo)
	if m == nil {
		t.Fatal("main.go has no var version")
	}
	if chart.AppVersion != string(m[1]) {
		t.Errorf("Chart.yaml appVersion %q, main.go version %q", chart.AppVersion, m[1])
	}
}

func managerContainer(t *testing.T, objs rendered) (appsv1.Deployment, corev1.Container) {
	t.Helper()
	var d appsv1.Deployment
	objs.decode(t, "Deployment/pb-patchbay-manager", &d)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("the manager pod has %d containers, want 1", n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

func TestChartManagerDeployment(t *testing.T) {
	d, c := managerContainer(t, render(t))
	var chart struct {
		AppVersion string `json:"appVersion"`
	}
	readYAML(t, "charts/patchbay/Chart.yaml", &chart)

	if want := "ghcr.io/patchbay-dev/patchbay-manager:" + chart.AppVersion; c.Image != want {
		t.Errorf("image %q, want %q", c.Image, want)
	}
	for _, arg := range []string{
		"--leader-elect",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--runtime-image=" + controllers.DefaultRuntimeRepository + ":" + chart.AppVersion,
		"--nats-image=" + controllers.DefaultNATSImage,
		fmt.Sprintf("--component-replicas=%d", controllers.DefaultComponentReplicas),
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	for _, arg := range c.Args {
		if strings.HasPrefix(arg, "--watch-namespaces") {
			t.Errorf("by default the manager watches every namespace, but it gets %s", arg)
		}
	}
	if d.Spec.Template.Spec.ServiceAccountName != "pb-patchbay" {
		t.Errorf("serviceAccountName %q", d.Spec.Template.Spec.ServiceAccountName)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v, want GET /readyz", c.ReadinessProbe)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}
}

// The manager pod passes the restricted Pod Security Standard (the e2e suite
// also installs the chart into a namespace that enforces it).
func TestChartManagerIsRestricted(t *testing.T) {
	d, c := managerContainer(t, render(t))
	pod := d.Spec.Template.Spec.SecurityContext
	sc := c.SecurityContext
	switch {
	case pod == nil || pod.RunAsNonRoot == nil || !*pod.RunAsNonRoot:
		t.Error("pod securityContext.runAsNonRoot is not true")
	case pod.SeccompProfile == nil || pod.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod seccompProfile is not RuntimeDefault")
	case sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("allowPrivilegeEscalation is not false")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("readOnlyRootFilesystem is not true")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Error("capabilities do not drop ALL")
	}
}

func TestChartValues(t *testing.T) {
	t.Run("image tags", func(t *testing.T) {
		_, c := managerContainer(t, render(t, "--set", "image.tag=dev", "--set", "runtimeImage.tag=dev", "--set", "natsImage=nats:2.13"))
		if c.Image != "ghcr.io/patchbay-dev/patchbay-manager:dev" {
			t.Errorf("image %q", c.Image)
		}
		for _, arg := range []string{"--runtime-image=ghcr.io/patchbay-dev/patchbay-runtime:dev", "--nats-image=nats:2.13"} {
			if !slices.Contains(c.Args, arg) {
				t.Errorf("args %v lack %s", c.Args, arg)
			}
		}
	})
	t.Run("no metrics, no leader election", func(t *testing.T) {
		objs := render(t, "--set", "metrics.enabled=false", "--set", "leaderElection=false")
		for _, key := range []string{"Service/pb-patchbay-metrics", "Role/pb-patchbay-leader-election"} {
			if _, ok := objs[key]; ok {
				t.Errorf("%s is rendered", key)
			}
		}
		_, c := managerContainer(t, objs)
		if slices.Contains(c.Args, "--leader-elect") || !slices.Contains(c.Args, "--metrics-bind-address=0") {
			t.Errorf("args %v", c.Args)
		}
	})
	t.Run("existing service account", func(t *testing.T) {
		objs := render(t, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops")
		if _, ok := objs["ServiceAccount/pb-patchbay"]; ok {
			t.Error("a ServiceAccount is rendered")
		}
		d, _ := managerContainer(t, objs)
		if d.Spec.Template.Spec.ServiceAccountName != "ops" {
			t.Errorf("serviceAccountName %q", d.Spec.Template.Spec.ServiceAccountName)
		}
	})
}
