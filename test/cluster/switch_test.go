//go:build cluster

package cluster

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// relay is the Workflow the switch case moves through four styles: a chain
// a → b → c, which every style can run and which answers the same in all of
// them, with short timeouts so that its drain periods are short.
func relay(style v1alpha1.Style) *v1alpha1.Workflow {
	d := func(s string) *metav1.Duration {
		v, err := time.ParseDuration(s)
		Expect(err).NotTo(HaveOccurred())
		return &metav1.Duration{Duration: v}
	}
	step := func(name string, dependsOn ...string) v1alpha1.Step {
		return v1alpha1.Step{
			Name: name, Image: "ghcr.io/patchbay-dev/demo-step:0.1.0",
			Args: []string{"--mode=transform", "--set=" + name + "=true"}, DependsOn: dependsOn,
		}
	}
	return &v1alpha1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "relay"},
		Spec: v1alpha1.WorkflowSpec{
			Style:  style,
			Broker: &v1alpha1.BrokerRef{Name: "default"},
			Entry:  &v1alpha1.Entry{Sync: ptr.To(true), Timeout: d("5s")},
			// A run accepted with 202 may wait for the new style's pods to
			// start on a node whose two cores both styles share: its deadline
			// allows for that (the entry timeout alone, 5 s, does not).
			RunTimeout: d("1m"),
			Resilience: &v1alpha1.Resilience{
				Timeout: d("2s"),
				Retry:   &v1alpha1.Retry{Attempts: ptr.To(int32(3)), Backoff: v1alpha1.BackoffConstant, InitialDelay: d("200ms"), MaxDelay: d("200ms")},
			},
			Steps: []v1alpha1.Step{step("a"), step("b", "a"), step("c", "b")},
		},
	}
}

const relayAnswer = `{"id":%d,"a":true,"b":true,"c":true}`

// switchRequest is one request of the switch case and what became of it.
type switchRequest struct {
	async  bool
	answer answer
	// run is the outcome of a 202's run, read from a gateway.
	run answer
	// runErr says why the run's outcome could not be read.
	runErr string
}

// switchUnderLoad is issue 11's acceptance: a client sends 50 requests a
// second, half of them asking to be answered asynchronously, while relay is
// switched through four styles; every request gets its right answer (200, or
// a 202 whose run completes), the endpoint never changes, and no child of an
// earlier style is left.
func switchUnderLoad(ctx SpecContext) {
	{
		By("making room on the node: during a switch both styles' pods run, and the two cores are requested in full")
		for _, name := range []string{"checkout", "orders", "shop"} {
			Expect(k8sClient.Delete(ctx, &v1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}})).To(Succeed())
		}
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			for _, name := range []string{"checkout", "orders", "shop"} {
				g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/workflow": name})).To(Succeed())
				g.Expect(pods.Items).To(BeEmpty(), name)
			}
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())

		Expect(k8sClient.Create(ctx, relay(v1alpha1.StyleSyncOrchestrated))).To(Succeed())
		expectWorkflowReady(ctx, "relay")
		expectNoSwitch(ctx, 2*time.Minute)
		endpointBefore, url := endpoint(ctx, "relay"), hostURL(ctx, "relay")
		Eventually(func(g Gomega) {
			a := fromHost(ctx, http.MethodPost, url, `{"id":0}`, nil)
			g.Expect(a.Status).To(Equal(http.StatusOK), a.Body+a.Error)
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

		stop := switchLoad(ctx, url)
		started := time.Now()
		for _, style := range []v1alpha1.Style{v1alpha1.StyleAsyncOrchestrated, v1alpha1.StyleHybrid, v1alpha1.StyleSyncChain, v1alpha1.StyleSyncOrchestrated} {
			t0 := time.Now()
			var wf v1alpha1.Workflow
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "relay"}, &wf)).To(Succeed())
			patch := client.MergeFrom(wf.DeepCopy())
			wf.Spec.Style = style
			Expect(k8sClient.Patch(ctx, &wf, patch)).To(Succeed())
			Eventually(func(g Gomega) {
				var svc corev1.Service
				g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "relay"}, &svc)).To(Succeed())
				g.Expect(svc.Spec.Selector).To(HaveKeyWithValue("patchbay.dev/style", style.Code()))
			}).WithContext(ctx).WithTimeout(4 * time.Minute).WithPolling(time.Second).Should(Succeed())
			By(fmt.Sprintf("switched to %s: the entry moved %s after the edit", style, time.Since(t0).Round(time.Second)))
			Expect(endpoint(ctx, "relay")).To(Equal(endpointBefore))
			Expect(hostURL(ctx, "relay")).To(Equal(url))
		}
		expectNoSwitch(ctx, 5*time.Minute)
		By(fmt.Sprintf("every earlier style drained and went %s after the first edit", time.Since(started).Round(time.Second)))
		requests := stop()

		counts := map[string]int{}
		for i, r := range requests {
			a := r.answer
			switch {
			case a.Error != "":
				counts["error"]++
				Fail(fmt.Sprintf("request %d (async %t): %s", i, r.async, a.Error))
			case a.Status == http.StatusOK:
				counts["200"]++
				Expect(a.Body).To(MatchJSON(fmt.Sprintf(relayAnswer, i)), "request %d", i)
			case a.Status == http.StatusAccepted:
				// An async style holds a sync caller for entry.timeout and
				// then answers 202 with the run's Location, as documented:
				// on a node that is starting the next style's pods, the
				// first runs of a style may take that long.
				if r.async {
					counts["202"]++
				} else {
					counts["202 after entry.timeout"]++
				}
				Expect(r.runErr).To(BeEmpty(), "run of request %d", i)
				Expect(r.run.Status).To(Equal(http.StatusOK), "run of request %d: %s", i, r.run.Body)
				Expect(r.run.Body).To(MatchJSON(fmt.Sprintf(relayAnswer, i)), "run of request %d", i)
				counts["runs completed"]++
			default:
				counts[fmt.Sprint(a.Status)]++
				again := ""
				if id := a.Headers["Patchbay-Run-Id"]; id != "" {
					run, err := readRun(ctx, id)
					again = fmt.Sprintf("; its run read again now: %d %s%s", run.Status, run.Body, err)
				}
				Fail(fmt.Sprintf("request %d (async %t): %d %s%s", i, r.async, a.Status, a.Body, again))
			}
		}
		By(fmt.Sprintf("%d requests sent during the switches, answered: %v", len(requests), counts))

		By("no child of an earlier style is left, and no pod")
		Expect(endpoint(ctx, "relay")).To(Equal(endpointBefore))
		for name, o := range labelled(ctx, client.MatchingLabels{"patchbay.dev/workflow": "relay"}) {
			if name == "Service/relay" {
				continue
			}
			Expect(o.GetLabels()).To(HaveKeyWithValue("patchbay.dev/style", "so"), name)
		}
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/workflow": "relay"})).To(Succeed())
			for _, p := range pods.Items {
				g.Expect(p.Labels).To(HaveKeyWithValue("patchbay.dev/style", "so"), p.Name)
			}
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(Succeed())
	}
}

// expectNoSwitch waits until relay's Switching condition is False.
func expectNoSwitch(ctx context.Context, timeout time.Duration) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var wf v1alpha1.Workflow
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "relay"}, &wf)).To(Succeed())
		c := metaCondition(wf.Status.Conditions, v1alpha1.ConditionSwitching)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse), "Switching %s: %s", c.Reason, c.Message)
		g.Expect(wf.Status.Retiring).To(BeEmpty())
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(2 * time.Second).Should(Succeed())
}

// switchLoad posts {"id":N} to url 50 times a second, every odd N with
// "Prefer: respond-async", until the returned function is called. A 202's
// run is read from a gateway until it is done: the sync styles have none,
// so while one runs the run is read from an earlier style's gateway, which
// serves until the switch's drain ends. A sync style answers 200 either way:
// it may ignore the preference (RFC 7240). An async style answers a sync
// request 202 too when its run outlasts entry.timeout.
func switchLoad(ctx context.Context, url string) func() []switchRequest {
	return load(20*time.Millisecond, func(i int) switchRequest {
		r := switchRequest{async: i%2 == 1}
		var headers map[string]string
		if r.async {
			headers = map[string]string{"Prefer": "respond-async"}
		}
		r.answer = fromHost(ctx, http.MethodPost, url, fmt.Sprintf(`{"id":%d}`, i), headers)
		if r.answer.Error == "" && r.answer.Status == http.StatusAccepted {
			r.run, r.runErr = readRun(ctx, r.answer.Headers["Patchbay-Run-Id"])
		}
		return r
	})
}

// gateways are the addresses of relay's gateway Services, of whichever
// styles, read at most once a second: every pending run polls them, and
// the client's rate limit would otherwise hold the polls back.
var gateways struct {
	mu    sync.Mutex
	read  time.Time
	addrs []string
}

func gatewayAddrs(ctx context.Context) ([]string, error) {
	gateways.mu.Lock()
	defer gateways.mu.Unlock()
	if time.Since(gateways.read) < time.Second {
		return gateways.addrs, nil
	}
	var svcs corev1.ServiceList
	if err := k8sClient.List(ctx, &svcs, client.InNamespace(namespace),
		client.MatchingLabels{"patchbay.dev/workflow": "relay", "patchbay.dev/component": "gateway"}); err != nil {
		return nil, err
	}
	sort.Slice(svcs.Items, func(i, j int) bool { return svcs.Items[i].Name < svcs.Items[j].Name })
	gateways.addrs = gateways.addrs[:0:0]
	for _, svc := range svcs.Items {
		gateways.addrs = append(gateways.addrs, svc.Spec.ClusterIP)
	}
	gateways.read = time.Now()
	return gateways.addrs, nil
}

// readRun polls GET /runs/{id} on relay's gateways, whichever styles they
// are of, until one answers with the run's outcome.
func readRun(ctx context.Context, id string) (answer, string) {
	if id == "" {
		return answer{}, "a 202 without Patchbay-Run-Id"
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		addrs, err := gatewayAddrs(ctx)
		if err != nil {
			return answer{}, err.Error()
		}
		if len(addrs) == 0 {
			return answer{}, "no gateway is left to read run " + id + " from"
		}
		for _, addr := range addrs {
			a := fromHost(ctx, http.MethodGet, "http://"+addr+"/runs/"+id, "", nil)
			if a.Error != "" || a.Status == http.StatusAccepted || a.Status == http.StatusNotFound || a.Status == http.StatusServiceUnavailable {
				continue // pending, not this gateway's store yet, or a gateway going away
			}
			return a, ""
		}
		select {
		case <-ctx.Done():
			return answer{}, ctx.Err().Error()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return answer{}, "run " + id + " was still pending after 3 minutes"
}

// labelled are the objects of the kinds a Workflow has children of that
// carry the labels, by "Kind/name".
func labelled(ctx context.Context, sel client.MatchingLabels) map[string]client.Object {
	GinkgoHelper()
	out := map[string]client.Object{}
	for kind, l := range map[string]client.ObjectList{
		"ConfigMap": &corev1.ConfigMapList{}, "Service": &corev1.ServiceList{}, "Deployment": &appsv1.DeploymentList{},
		"NetworkPolicy": &networkingv1.NetworkPolicyList{}, "PodDisruptionBudget": &policyv1.PodDisruptionBudgetList{},
	} {
		Expect(k8sClient.List(ctx, l, client.InNamespace(namespace), sel)).To(Succeed())
		items, err := meta.ExtractList(l)
		Expect(err).NotTo(HaveOccurred())
		for _, it := range items {
			o := it.(client.Object)
			out[kind+"/"+o.GetName()] = o
		}
	}
	return out
}
