// Package clustertest is what the suites under test/ share: the repository's
// root (all of them) and a client of the cluster that test/cluster (a real
// node) and test/e2e (kwok) run patchbay on.
package clustertest

import (
	"path/filepath"
	goruntime "runtime"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// Root is the repository's root directory.
var Root = func() string {
	_, file, _, _ := goruntime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// NewClient is a client of the cluster of cfg that knows the built-in kinds
// and patchbay's.
func NewClient(cfg *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	return client.New(cfg, client.Options{Scheme: scheme})
}
