package controllers

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/natsauth"
	"github.com/patchbay-dev/patchbay/internal/render"
)

func TestStorageChange(t *testing.T) {
	broker := func(js *v1alpha1.JetStream) *v1alpha1.Broker {
		return &v1alpha1.Broker{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "events"}, Spec: v1alpha1.BrokerSpec{JetStream: js}}
	}
	gi := func(s string) *resource.Quantity { return ptr.To(resource.MustParse(s)) }
	tests := []struct {
		name      string
		live, now *v1alpha1.JetStream
		want      string
	}{
		{"nothing changed", &v1alpha1.JetStream{Size: gi("1Gi")}, &v1alpha1.JetStream{Size: gi("1024Mi")}, ""},
		{"an unrelated field", nil, &v1alpha1.JetStream{Storage: v1alpha1.StorageFile}, ""},
		{"a bigger size", &v1alpha1.JetStream{Size: gi("1Gi")}, &v1alpha1.JetStream{Size: gi("2Gi")}, "spec.jetstream.size changed from 1Gi to 2Gi, but"},
		{"a class", nil, &v1alpha1.JetStream{StorageClassName: ptr.To("fast")}, `spec.jetstream.storageClassName changed from "" to "fast", but`},
		{"size and class", &v1alpha1.JetStream{StorageClassName: ptr.To("fast")}, &v1alpha1.JetStream{Size: gi("5Gi"), StorageClassName: ptr.To("slow")},
			`spec.jetstream.size changed from 10Gi to 5Gi and spec.jetstream.storageClassName changed from "fast" to "slow"`},
		{"to memory", nil, &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}, "spec.jetstream.storage changed from file to memory"},
		{"to file", &v1alpha1.JetStream{Storage: v1alpha1.StorageMemory}, nil, "spec.jetstream.storage changed from memory to file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sts := func(js *v1alpha1.JetStream) *render.BrokerInput {
				return &render.BrokerInput{Broker: broker(js), Auth: testAuth(t)}
			}
			live, desired := render.NATSStatefulSet(sts(tt.live)), render.NATSStatefulSet(sts(tt.now))
			got := storageChange(broker(tt.now), live, desired)
			if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
				t.Errorf("storageChange = %q, want it to start with %q", got, tt.want)
			}
			if got != "" && !strings.Contains(got, "kubectl -n prod delete statefulset events-nats --cascade=orphan") {
				t.Errorf("storageChange = %q, want the command that applies it", got)
			}
		})
	}
}

// testAuth is a Broker's identity material for tests that render a Broker.
func testAuth(t *testing.T) *natsauth.Broker {
	t.Helper()
	a, err := natsauth.NewBroker("test", "pbtestroutepassword")
	if err != nil {
		t.Fatal(err)
	}
	return a
}
