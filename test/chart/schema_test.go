package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// values.schema.json rejects a mistyped value at helm template (and install),
// with a message that names the value.
func TestChartSchemaRejectsMistypedValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  []string
		want []string // in helm's error
	}{
		{"wrong type", []string{"replicaCount=abc"}, []string{"/replicaCount", "want integer"}},
		{"unknown top-level key", []string{"imagee.tag=x"}, []string{"'imagee' not allowed"}},
		{"unknown nested key", []string{"image.tagg=x"}, []string{"/image", "'tagg' not allowed"}},
		{"pull policy not in the enum", []string{"image.pullPolicy=Sometimes"}, []string{"/image/pullPolicy", "IfNotPresent"}},
		{"log level not in the enum", []string{"logLevel=verbose"}, []string{"/logLevel"}},
		{"runtime image has no pullPolicy", []string{"runtimeImage.pullPolicy=Never"}, []string{"/runtimeImage", "'pullPolicy' not allowed"}},
		{"monitor switch is a boolean", []string{"metrics.podMonitor.enabled=yes"}, []string{"/metrics/podMonitor/enabled", "want boolean"}},
		{"scrape interval is a duration", []string{"metrics.serviceMonitor.interval=often"}, []string{"/metrics/serviceMonitor/interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"template", "pb", chartDir}
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out := helmFails(t, args...)
			if !strings.Contains(out, "schema") {
				t.Errorf("helm failed, but not on the schema:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("helm's error lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// Values the schema must keep accepting: free-form maps, the string form of
// natsImage, integer log levels, and the locally built images.
func TestChartSchemaAcceptsValidValues(t *testing.T) {
	render(t,
		"--set", "replicaCount=2",
		"--set", "logLevel=3",
		"--set", "podAnnotations.example\\.com/a=b",
		"--set", "nodeSelector.kubernetes\\.io/os=linux",
		"--set", "resources.limits.cpu=1",
		"--set", "affinity.nodeAffinity.x=y",
		"--set", "tolerations[0].operator=Exists",
		"--set", "extraEnv[0].name=A,extraEnv[0].value=b",
		"--set", "natsImage=nats:2.13",
		"--set", "metrics.serviceMonitor.interval=1m30s",
	)
}

// Every value in values.yaml is declared in the schema: the chart's root and
// every object it owns forbid unknown keys, so a value the schema lacks would
// fail the chart's own defaults; this names it instead.
func TestChartSchemaCoversEveryValue(t *testing.T) {
	var values map[string]any
	readYAML(t, "charts/patchbay/values.yaml", &values)
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	if got := schema["$schema"]; got != "http://json-schema.org/draft-07/schema#" {
		t.Errorf("$schema %v, want draft-07", got)
	}
	var walk func(path string, v any, s map[string]any)
	walk = func(path string, v any, s map[string]any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		props, _ := s["properties"].(map[string]any)
		if props == nil {
			// A free-form map (podAnnotations, resources...), or a value with
			// alternatives (natsImage): helm validates it; nothing to walk.
			return
		}
		if open, ok := s["additionalProperties"].(bool); !ok || open {
			t.Errorf("%s: the schema does not set additionalProperties: false", path)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s.%s is in values.yaml but not in values.schema.json", path, k)
				continue
			}
			if ps["type"] == nil && ps["oneOf"] == nil && ps["anyOf"] == nil {
				t.Errorf("%s.%s has no type in values.schema.json", path, k)
			}
			walk(path+"."+k, m[k], ps)
		}
	}
	walk("", values, schema)
	// The defaults pass the schema (helm checks it on every render).
	render(t)
}

// natsImage is a repository and a tag, or one string (the value before it
// was split); either is what the manager gets as --nats-image.
func TestChartNATSImage(t *testing.T) {
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"natsImage=nats:2.13"}, "nats:2.13"},
		{[]string{"natsImage.repository=ghcr.io/patchbay-dev/nats-server", "natsImage.tag=v2.15.2"}, "ghcr.io/patchbay-dev/nats-server:v2.15.2"},
	} {
		var args []string
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		_, c := managerContainer(t, render(t, args...))
		if !slices.Contains(c.Args, "--nats-image="+tc.want) {
			t.Errorf("--set %v: args %v lack --nats-image=%s", tc.set, c.Args, tc.want)
		}
	}
}

// The chart runs on images imported into the nodes' containerd, with no pull:
// every image is settable and the manager's pull policy is IfNotPresent.
func TestChartLocalImages(t *testing.T) {
	values := filepath.Join(t.TempDir(), "local.yaml")
	b, err := yaml.Marshal(map[string]any{
		"image":        map[string]any{"repository": "ghcr.io/patchbay-dev/patchbay-manager", "tag": "0.1.0", "pullPolicy": "IfNotPresent"},
		"runtimeImage": map[string]any{"repository": "ghcr.io/patchbay-dev/patchbay-runtime", "tag": "0.1.0"},
		"natsImage":    map[string]any{"repository": "ghcr.io/patchbay-dev/nats-server", "tag": "v2.15.2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(values, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, c := managerContainer(t, render(t, "-f", values))
	if c.Image != "ghcr.io/patchbay-dev/patchbay-manager:0.1.0" || c.ImagePullPolicy != "IfNotPresent" {
		t.Errorf("manager image %q, pull policy %q", c.Image, c.ImagePullPolicy)
	}
	for _, arg := range []string{
		"--runtime-image=ghcr.io/patchbay-dev/patchbay-runtime:0.1.0",
		"--nats-image=ghcr.io/patchbay-dev/nats-server:v2.15.2",
	} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
}
