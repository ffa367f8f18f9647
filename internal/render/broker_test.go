package render

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/golden"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
)

func broker(name string, replicas int32, js *v1alpha1.JetStream) *v1alpha1.Broker {
	b := &v1alpha1.Broker{Spec: v1alpha1.BrokerSpec{Replicas: ptr.To(replicas), JetStream: js}}
	b.Name, b.Namespace, b.UID = name, goldenNamespace, goldenUID
	return b
}

func TestNATSConfigGolden(t *testing.T) {
	size := resource.MustParse("2Gi")
	brokers := map[string]*v1alpha1.Broker{
		"r1-defaults.conf": {ObjectMeta: broker("solo", 1, nil).ObjectMeta},
		"r3-file.conf":     sampleBroker(t),
		"r5-memory.conf":   broker("big", 5, &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory, Size: &size}),
	}
	want := map[string][]byte{}
	for file, b := range brokers {
		want[file] = []byte(NATSConfig(b, goldenAuth))
	}
	golden.CheckDir(t, "nats", want)
}

func TestNATSConfigRoutesEveryServer(t *testing.T) {
	for _, n := range []int32{1, 3, 5} {
		b := broker("b", n, nil)
		conf := NATSConfig(b, goldenAuth)
		routes := 0
		for i, u := range natsRouteURLs(b) {
			if strings.Contains(conf, fmt.Sprintf("    $NATS_ROUTE_%d\n", i)) && strings.HasSuffix(u, fmt.Sprintf("@b-nats-%d.b-nats-headless.default.svc:6222", i)) {
				routes++
			}
		}
		want := int(n)
		if n == 1 {
			want = 0
		}
		if routes != want || strings.Contains(conf, "cluster {") != (n > 1) {
			t.Errorf("%d servers: %d routes, want %d:\n%s", n, routes, want, conf)
		}
	}
}

func TestBrokerGolden(t *testing.T) {
	in := &BrokerInput{Broker: sampleBroker(t), Settings: testSettings, Auth: goldenAuth}
	golden.CheckDir(t, "broker", objectFiles(t, BrokerObjects(in)))
}

func TestNATSStatefulSet(t *testing.T) {
	class := "fast"
	size := resource.MustParse("5Gi")
	tests := []struct {
		name      string
		broker    *v1alpha1.Broker
		wantImage string
		wantClaim string // "" when the data is not on a claim
		wantClass *string
	}{
		{"defaults: file storage of 10Gi, the operator's image", broker("a", 1, nil), testSettings.NATSImage, "10Gi", nil},
		{"a storage class and size", broker("b", 3, &v1alpha1.JetStream{Size: &size, StorageClassName: &class}), testSettings.NATSImage, "5Gi", &class},
		{"memory storage has no claim", broker("c", 3, &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}), testSettings.NATSImage, "", nil},
		{"the Broker's own image", func() *v1alpha1.Broker { b := broker("d", 1, nil); b.Spec.Image = "mirror.test/nats:2"; return b }(), "mirror.test/nats:2", "10Gi", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := NATSStatefulSet(&BrokerInput{Broker: tt.broker, Settings: testSettings, Auth: goldenAuth})
			if sts.Spec.PodManagementPolicy != "Parallel" || sts.Spec.ServiceName != tt.broker.Name+"-nats-headless" {
				t.Errorf("pod management %q, service %q", sts.Spec.PodManagementPolicy, sts.Spec.ServiceName)
			}
			if *sts.Spec.Replicas != tt.broker.DesiredReplicas() {
				t.Errorf("replicas %d", *sts.Spec.Replicas)
			}
			c := sts.Spec.Template.Spec.Containers[0]
			if c.Image != tt.wantImage {
				t.Errorf("image %q, want %q", c.Image, tt.wantImage)
			}
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p.HTTPGet.Path != "/healthz?js-enabled-only=true" {
					t.Errorf("probe path %q", p.HTTPGet.Path)
				}
			}
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || !strings.Contains(strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "ldm=") {
				t.Errorf("no lame-duck preStop: %+v", c.Lifecycle)
			}
			switch {
			case tt.wantClaim == "" && len(sts.Spec.VolumeClaimTemplates) != 0:
				t.Errorf("claims %v, want none", sts.Spec.VolumeClaimTemplates)
			case tt.wantClaim != "":
				if len(sts.Spec.VolumeClaimTemplates) != 1 {
					t.Fatalf("claims %v, want one", sts.Spec.VolumeClaimTemplates)
				}
				claim := sts.Spec.VolumeClaimTemplates[0]
				got := claim.Spec.Resources.Requests[corev1.ResourceStorage]
				if got.String() != tt.wantClaim || fmt.Sprint(claim.Spec.StorageClassName) != fmt.Sprint(tt.wantClass) {
					t.Errorf("claim of %s in class %v, want %s in %v", got.String(), claim.Spec.StorageClassName, tt.wantClaim, tt.wantClass)
				}
			}
		})
	}
}

func TestNATSRollsWhenItsConfigOrCredentialsChange(t *testing.T) {
	hash := func(b *v1alpha1.Broker, a *natsauth.Broker) string {
		return NATSStatefulSet(&BrokerInput{Broker: b, Settings: testSettings, Auth: a}).Spec.Template.Annotations[AnnotationConfigHash]
	}
	other := *goldenAuth
	other.RoutePassword = "pbother"
	fresh, err := natsauth.NewBroker("a", goldenAuth.RoutePassword)
	if err != nil {
		t.Fatal(err)
	}
	base := hash(broker("a", 3, nil), goldenAuth)
	if base == hash(broker("a", 5, nil), goldenAuth) {
		t.Error("a new route list does not roll the servers")
	}
	if base == hash(broker("a", 3, nil), &other) {
		t.Error("a new route password does not roll the servers")
	}
	if base == hash(broker("a", 3, nil), fresh) {
		t.Error("new keys do not roll the servers")
	}
	if base != hash(broker("a", 3, nil), goldenAuth) {
		t.Error("the hash is not stable")
	}
}

func TestNATSSecretsStayOutOfTheConfigMap(t *testing.T) {
	in := &BrokerInput{Broker: sampleBroker(t), Settings: testSettings, Auth: goldenAuth}
	conf := NATSConfigMap(in).Data["nats.conf"]
	for _, secret := range []string{goldenAuth.RoutePassword, string(goldenAuth.OperatorSeed), string(goldenAuth.SystemSeed), string(goldenAuth.AccountSeed)} {
		if strings.Contains(conf, secret) {
			t.Errorf("nats.conf holds a secret %.6s…:\n%s", secret, conf)
		}
	}
	sts := NATSStatefulSet(in)
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if strings.Contains(e.Value, goldenAuth.RoutePassword) {
			t.Errorf("env %s holds the route password", e.Name)
		}
	}
}

func TestNATSResources(t *testing.T) {
	memory := func(size string) *v1alpha1.JetStream {
		q := resource.MustParse(size)
		return &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory, Size: &q}
	}
	tests := []struct {
		name           string
		js             *v1alpha1.JetStream
		request        string
		limit          string // "" for none
		wantGoMemLimit string
	}{
		{"file storage asks, and is not limited", nil, "256Mi", "", ""},
		{"memory storage: the store plus a quarter", memory("4Gi"), "5Gi", "5Gi", "4831838208"},
		{"memory storage: at least 256Mi of headroom", memory("512Mi"), "768Mi", "768Mi", "724775724"},
		{"memory storage of the default size", &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}, "12800Mi", "12800Mi", "12079595520"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NATSStatefulSet(&BrokerInput{Broker: broker("m", 3, tt.js), Settings: testSettings, Auth: goldenAuth}).Spec.Template.Spec.Containers[0]
			req, limit := c.Resources.Requests[corev1.ResourceMemory], c.Resources.Limits[corev1.ResourceMemory]
			if req.String() != tt.request {
				t.Errorf("memory request %s, want %s", req.String(), tt.request)
			}
			if got := c.Resources.Limits.Memory(); tt.limit == "" && !got.IsZero() || tt.limit != "" && limit.String() != tt.limit {
				t.Errorf("memory limit %s, want %q", got, tt.limit)
			}
			var goMemLimit string
			for _, e := range c.Env {
				if e.Name == "GOMEMLIMIT" {
					goMemLimit = e.Value
				}
			}
			if goMemLimit != tt.wantGoMemLimit {
				t.Errorf("GOMEMLIMIT %q, want %q", goMemLimit, tt.wantGoMemLimit)
			}
		})
	}
}
