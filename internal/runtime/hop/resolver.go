package hop

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Resolver maps a step to the base URL of its sidecar, where runs call it.
type Resolver interface {
	StepURL(step *plan.Step) (string, error)
}

// ClusterResolver reaches steps through their Services: http://<service>.<namespace>.svc:80.
type ClusterResolver struct{ Namespace string }

// StepURL implements Resolver.
func (c ClusterResolver) StepURL(step *plan.Step) (string, error) {
	return "http://" + step.Service + "." + c.Namespace + ".svc:" + strconv.Itoa(plan.ServicePort), nil
}

// StaticResolver maps step names to base URLs, for the dev mode and tests.
type StaticResolver map[string]string

// StepURL implements Resolver.
func (s StaticResolver) StepURL(step *plan.Step) (string, error) {
	u, ok := s[step.Name]
	if !ok {
		return "", fmt.Errorf("no address for step %s", step.Name)
	}
	return u, nil
}

// NewTransport is the one http.Transport of a process: keep-alive connections
// to every sidecar and app it calls, enough idle ones that a burst does not
// redial, and no compression or proxy on a pod-local hop.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // the edge's per-attempt timeout bounds an attempt
	}
}

// OverrideResolver resolves the steps it lists to fixed URLs and every other
// step through Next.
type OverrideResolver struct {
	URLs map[string]string
	Next Resolver
}

// StepURL implements Resolver.
func (o OverrideResolver) StepURL(step *plan.Step) (string, error) {
	if u, ok := o.URLs[step.Name]; ok {
		return u, nil
	}
	return o.Next.StepURL(step)
}
