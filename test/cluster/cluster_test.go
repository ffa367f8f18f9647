//go:build cluster

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
)

// sample is one of config/samples, with what it answers to {"id":7}.
type sample struct {
	style, workflow, want string
}

var samples = []sample{
	{"sync-chain", "quote", `{"id":7,"cart":"loaded","priced":true,"taxed":true}`},
	{"sync-orchestrated", "checkout", `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true},"confirmed":true}`},
	{"async-orchestrated", "fulfilment", `{"id":7,"valid":true,"picked":true,"packed":true,"shipped":true}`},
	{"choreography", "orders", `{"id":7,"reserved":true,"charged":true}`},
	{"hybrid", "shop", `{"charge":{"id":7,"valid":true,"charged":true},"reserve":{"id":7,"valid":true,"reserved":true}}`},
}

func intstrPort(p int) intstr.IntOrString { return intstr.FromInt(p) }

var _ = Describe("patchbay on a real node", Ordered, func() {
	It("brings the Broker and every sample to Ready", func(ctx SpecContext) {
		expectBrokerReady(ctx)
		for _, s := range samples {
			expectWorkflowReady(ctx, s.workflow)
		}
	}, SpecTimeout(10*time.Minute))

	It("answers every sample through its endpoint from the host and from a pod", func(ctx SpecContext) {
		for _, s := range samples {
			By(s.style + " from the host")
			url := hostURL(ctx, s.workflow)
			Eventually(func(g Gomega) {
				a := fromHost(ctx, http.MethodPost, url, `{"id":7}`, nil)
				g.Expect(a.Error).To(BeEmpty())
				g.Expect(a.Status).To(Equal(http.StatusOK), a.Body)
				g.Expect(a.Body).To(MatchJSON(s.want))
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())

			By(s.style + " from a pod, through the cluster's DNS")
			Eventually(func(g Gomega) {
				a := fromProbe(ctx, http.MethodPost, endpoint(ctx, s.workflow)+"/", `{"id":7}`, nil)
				g.Expect(a.Error).To(BeEmpty())
				g.Expect(a.Status).To(Equal(http.StatusOK), a.Body)
				g.Expect(a.Body).To(MatchJSON(s.want))
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		}
	}, SpecTimeout(10*time.Minute))

	It("forms a NATS cluster of three from the rendered config, with authenticated clients", func(ctx SpecContext) {
		for _, ip := range natsPodIPs(ctx) {
			var jsz struct {
				Meta struct {
					Leader      string `json:"leader"`
					ClusterSize int    `json:"cluster_size"`
				} `json:"meta_cluster"`
				Accounts []struct {
					Streams []struct {
						Name   string `json:"name"`
						Config struct {
							Replicas int `json:"num_replicas"`
						} `json:"config"`
					} `json:"stream_detail"`
				} `json:"account_details"`
			}
			getJSON(ctx, "http://"+ip+":8222/jsz?accounts=true&streams=true&config=true", &jsz)
			Expect(jsz.Meta.Leader).NotTo(BeEmpty(), "JetStream meta leader seen from %s", ip)
			Expect(jsz.Meta.ClusterSize).To(Equal(3))
			streams := 0
			for _, a := range jsz.Accounts {
				for _, st := range a.Streams {
					streams++
					Expect(st.Config.Replicas).To(Equal(3), "stream %s", st.Name)
				}
			}
			// Streams are placed on every server at R3, so each reports them.
			Expect(streams).To(BeNumerically(">=", 3), "workflow streams on %s", ip)

			var connz struct {
				Conns []struct {
					Name string `json:"name"`
					User string `json:"authorized_user"`
				} `json:"connections"`
			}
			getJSON(ctx, "http://"+ip+":8222/connz?auth=true", &connz)
			// Each Workflow connects as its own user ("patchbay <ns>/<wf> <role>").
			users := map[string]string{}
			for _, c := range connz.Conns {
				Expect(c.User).NotTo(BeEmpty(), "connection %q to %s is not authenticated", c.Name, ip)
				fields := strings.Fields(c.Name)
				if len(fields) < 3 || fields[0] != "patchbay" {
					continue
				}
				if u, ok := users[fields[1]]; ok {
					Expect(c.User).To(Equal(u), "the connections of %s to %s use one user", fields[1], ip)
				}
				users[fields[1]] = c.User
			}
			seen := map[string]string{}
			for wf, u := range users {
				Expect(seen).NotTo(HaveKey(u), "%s and %s share a NATS user on %s", wf, seen[u], ip)
				seen[u] = wf
			}
		}
	}, SpecTimeout(2*time.Minute))

	It("loses no accepted run when a NATS server is deleted under load", func(ctx SpecContext) {
		// The sample's runs live as long as its entry timeout (8 s), which a
		// NATS server's restart on a busy node can outlast: a run that misses
		// its deadline fails with 504, as it should, but this case is about
		// runs that a deadline allows to wait for the broker.
		By("giving fulfilment's runs a deadline that outlasts a NATS server's restart (spec.runTimeout 2m)")
		var wf v1alpha1.Workflow
		Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "fulfilment"}, &wf)).To(Succeed())
		patch := client.MergeFrom(wf.DeepCopy())
		wf.Spec.RunTimeout = &metav1.Duration{Duration: 2 * time.Minute}
		Expect(k8sClient.Patch(ctx, &wf, patch)).To(Succeed())
		expectWorkflowReady(ctx, "fulfilment")
		waitRolledOut(ctx)
		restartsBefore := workflowPodRestarts(ctx)
		load := steadyLoad(ctx, hostURL(ctx, "fulfilment"), map[string]string{"Prefer": "respond-async"})
		By("deleting default-nats-1 while runs arrive, until it is back")
		Expect(k8sClient.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "default-nats-1", Namespace: namespace}})).To(Succeed())
		Eventually(func(g Gomega) {
			var p corev1.Pod
			g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "default-nats-1"}, &p)).To(Succeed())
			g.Expect(p.DeletionTimestamp).To(BeNil())
			g.Expect(podReady(&p)).To(BeTrue())
		}).WithContext(ctx).WithTimeout(5 * time.Minute).WithPolling(time.Second).Should(Succeed())
		answers := load()

		var accepted []answer
		refused := 0
		for _, a := range answers {
			if a.Error == "" && a.Status == http.StatusAccepted {
				accepted = append(accepted, a)
			} else {
				refused++
			}
		}
		By(fmt.Sprintf("%d runs sent, %d accepted, %d refused at the door", len(answers), len(accepted), refused))
		Expect(len(accepted)).To(BeNumerically(">=", len(answers)*9/10))
		expectRunsComplete(ctx, "fulfilment", answers, `{"id":%d,"valid":true,"picked":true,"packed":true,"shipped":true}`)
		expectBrokerReady(ctx)
		By("no workflow pod restarted while a NATS server was gone")
		Expect(workflowPodRestarts(ctx)).To(Equal(restartsBefore))
	}, SpecTimeout(10*time.Minute))

	It("rolls out a sync-chain step and an async step under load without a failed request or run", func(ctx SpecContext) {
		chain := steadyLoad(ctx, hostURL(ctx, "quote"), nil)
		async := steadyLoad(ctx, hostURL(ctx, "fulfilment"), map[string]string{"Prefer": "respond-async"})
		for _, d := range []string{"quote-sc-cart", "quote-sc-pricing", "fulfilment-ao-pick"} {
			By("restarting " + d + " under load")
			kubectl(ctx, "rollout", "restart", "-n", namespace, "deployment/"+d)
		}
		for _, d := range []string{"quote-sc-cart", "quote-sc-pricing", "fulfilment-ao-pick"} {
			kubectl(ctx, "rollout", "status", "-n", namespace, "deployment/"+d, "--timeout=5m")
		}
		chainAnswers, asyncAnswers := chain(), async()

		By(fmt.Sprintf("sync-chain: %d requests during the rollout", len(chainAnswers)))
		for i, a := range chainAnswers {
			Expect(a.Error).To(BeEmpty(), "request %d", i)
			Expect(a.Status).To(Equal(http.StatusOK), "request %d: %s", i, a.Body)
			Expect(a.Body).To(MatchJSON(fmt.Sprintf(`{"id":%d,"cart":"loaded","priced":true,"taxed":true}`, i)))
		}
		By(fmt.Sprintf("async-orchestrated: %d runs during the rollout", len(asyncAnswers)))
		for i, a := range asyncAnswers {
			Expect(a.Error).To(BeEmpty(), "run %d", i)
			Expect(a.Status).To(Equal(http.StatusAccepted), "run %d: %s", i, a.Body)
		}
		expectRunsComplete(ctx, "fulfilment", asyncAnswers, `{"id":%d,"valid":true,"picked":true,"packed":true,"shipped":true}`)
	}, SpecTimeout(10*time.Minute))

	It("enforces the NetworkPolicies drawn from the graph", func(ctx SpecContext) {
		By("DNS works from a pod")
		addrs, err := probeResolve(ctx, "kubernetes.default.svc.cluster.local")
		Expect(err).NotTo(HaveOccurred())
		Expect(addrs).NotTo(BeEmpty())

		By("the entries admit a pod outside the graph")
		for _, wf := range []string{"checkout", "fulfilment"} {
			Expect(probeDial(ctx, serviceHost(ctx, wf)+":80")).To(Succeed(), "entry of %s", wf)
		}

		By("a pod outside the graph reaches no step, no async orchestrator and no broker")
		for _, target := range []struct{ service, why string }{
			{"checkout-so-charge", "only the orchestrator calls it"},
			{"quote-sc-pricing", "only the chain's previous step calls it"},
			{"fulfilment-ao-validate", "in an async style nobody calls a step over HTTP"},
			{"fulfilment-ao-orchestrator", "it is not the entry of an async style"},
			{"default-nats", "only the pods of the Broker's workflows are its clients"},
		} {
			// Dial the Service's address, not its name: a name that does not
			// resolve would pass for a blocked connection.
			var svc corev1.Service
			Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: target.service}, &svc)).To(Succeed())
			port := svc.Spec.Ports[0].Port
			// A Service without endpoints refuses connections too: make sure
			// only the policy can be what stops this one.
			expectReadyEndpoints(ctx, target.service)
			err := probeDial(ctx, fmt.Sprintf("%s:%d", svc.Spec.ClusterIP, port))
			Expect(err).To(HaveOccurred(), "%s:%d is reachable from a pod outside the graph, but %s", target.service, port, target.why)
			// kube-router rejects; other enforcers drop.
			Expect(err.Error()).To(Or(ContainSubstring("refused"), ContainSubstring("timeout")), target.service)
		}
	}, SpecTimeout(3*time.Minute))

	It("enforces the restricted Pod Security Standard in every namespace", func(ctx SpecContext) {
		var nss corev1.NamespaceList
		Expect(k8sClient.List(ctx, &nss)).To(Succeed())
		for _, ns := range nss.Items {
			if ns.Name == "kube-system" || ns.Name == "local-path-storage" {
				continue // the cluster's own, exempt
			}
			// No security context at all: it runs as the image's user, may
			// escalate, keeps its capabilities and has no seccomp profile, all
			// of which the baseline standard allows and restricted does not.
			loose := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "unrestricted", Namespace: ns.Name},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: env.probeImage}}},
			}
			err := k8sClient.Create(ctx, loose, client.DryRunAll)
			Expect(err).To(HaveOccurred(), "namespace %s admits a pod that is not restricted", ns.Name)
			Expect(err.Error()).To(ContainSubstring("violates PodSecurity \"restricted"), ns.Name)
		}
	})

	It("switches style at 50 requests/s without losing one: sync-orchestrated → async-orchestrated → hybrid → sync-chain → sync-orchestrated",
		switchUnderLoad, SpecTimeout(15*time.Minute))

	It("starts workflow pods while the Broker is scaled to 0, and they become Ready without a restart once it is back", func(ctx SpecContext) {
		scale := func(ctx context.Context, ns, what string, n int) {
			GinkgoHelper()
			kubectl(ctx, "scale", "-n", ns, what, fmt.Sprintf("--replicas=%d", n))
		}
		By("stopping the manager, which would scale the Broker back, then every NATS server")
		scale(ctx, releaseNamespace, "deployment/patchbay-manager", 0)
		DeferCleanup(func(ctx SpecContext) {
			scale(ctx, namespace, "statefulset/default-nats", 3)
			scale(ctx, releaseNamespace, "deployment/patchbay-manager", 1)
		}, NodeTimeout(time.Minute))
		scale(ctx, namespace, "statefulset/default-nats", 0)
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/broker": "default", "patchbay.dev/component": "nats"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())

		By("restarting an async step and a gateway while no NATS server runs")
		since := time.Now().Add(-time.Second)
		restarted := []string{"fulfilment-ao-validate", "fulfilment-ao-gateway"}
		for _, d := range restarted {
			kubectl(ctx, "rollout", "restart", "-n", namespace, "deployment/"+d)
		}
		newPods := func(g Gomega) []corev1.Pod {
			var pods corev1.PodList
			g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/workflow": "fulfilment"})).To(Succeed())
			var out []corev1.Pod
			for _, p := range pods.Items {
				if p.CreationTimestamp.After(since) && p.DeletionTimestamp == nil {
					out = append(out, p)
				}
			}
			return out
		}
		Eventually(func(g Gomega) {
			pods := newPods(g)
			g.Expect(len(pods)).To(BeNumerically(">=", 2))
			for _, p := range pods {
				g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), p.Name)
			}
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
		By("waiting longer than liveness would tolerate a failing probe: they wait unready, and nothing restarts them")
		Consistently(func(g Gomega) {
			for _, p := range newPods(g) {
				g.Expect(podReady(&p)).To(BeFalse(), "%s is ready without a broker", p.Name)
				for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
					g.Expect(st.RestartCount).To(BeZero(), "%s/%s", p.Name, st.Name)
				}
			}
		}).WithContext(ctx).WithTimeout(45 * time.Second).WithPolling(3 * time.Second).Should(Succeed())

		By("bringing the Broker back")
		scale(ctx, namespace, "statefulset/default-nats", 3)
		scale(ctx, releaseNamespace, "deployment/patchbay-manager", 1)
		for _, d := range restarted {
			kubectl(ctx, "rollout", "status", "-n", namespace, "deployment/"+d, "--timeout=5m")
		}
		expectBrokerReady(ctx)
		Eventually(func(g Gomega) {
			for _, p := range newPods(g) {
				for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
					g.Expect(st.RestartCount).To(BeZero(), "%s/%s", p.Name, st.Name)
				}
			}
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
		url := hostURL(ctx, "fulfilment")
		Eventually(func(g Gomega) {
			a := fromHost(ctx, http.MethodPost, url, `{"id":7}`, nil)
			g.Expect(a.Status).To(Equal(http.StatusOK), a.Body+a.Error)
			g.Expect(a.Body).To(MatchJSON(samples[2].want))
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
	}, SpecTimeout(12*time.Minute))

	It("removes a deleted Workflow's pods", func(ctx SpecContext) {
		Expect(k8sClient.Delete(ctx, &v1alpha1.Workflow{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "quote"}})).To(Succeed())
		Eventually(func(g Gomega) {
			var pods corev1.PodList
			g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/workflow": "quote"})).To(Succeed())
			g.Expect(pods.Items).To(BeEmpty())
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	}, SpecTimeout(4*time.Minute))

	It("restarted no pod: the probes are right", func(ctx SpecContext) {
		for _, ns := range []string{namespace, releaseNamespace} {
			var pods corev1.PodList
			Expect(k8sClient.List(ctx, &pods, client.InNamespace(ns))).To(Succeed())
			for _, p := range pods.Items {
				for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
					Expect(st.RestartCount).To(BeZero(), "pod %s/%s container %s restarted: %v", ns, p.Name, st.Name, st.LastTerminationState.Terminated)
				}
			}
		}
	})
})

// waitRolledOut waits until every workflow Deployment has finished its
// rollout and no workflow pod is terminating, so that a snapshot of the pods
// does not hold pods a rollout started earlier is about to replace (a
// Workflow's pods roll once when its NATS credentials are first written).
func waitRolledOut(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var deps appsv1.DeploymentList
		g.Expect(k8sClient.List(ctx, &deps, client.InNamespace(namespace), client.HasLabels{"patchbay.dev/workflow"})).To(Succeed())
		for _, d := range deps.Items {
			want := ptr.Deref(d.Spec.Replicas, 1)
			st := d.Status
			g.Expect(st.ObservedGeneration).To(Equal(d.Generation), d.Name)
			g.Expect([]int32{st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas}).To(HaveEach(want), d.Name)
		}
		var pods corev1.PodList
		g.Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.HasLabels{"patchbay.dev/workflow"})).To(Succeed())
		for _, p := range pods.Items {
			g.Expect(p.DeletionTimestamp).To(BeNil(), "pod %s is terminating", p.Name)
		}
	}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
}

// workflowPodRestarts are the container restarts of every workflow pod that
// is not terminating, by pod.
func workflowPodRestarts(ctx context.Context) map[string]int32 {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.HasLabels{"patchbay.dev/workflow"})).To(Succeed())
	out := map[string]int32{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			out[p.Name] += st.RestartCount
		}
	}
	return out
}

// steadyLoad posts {"id":N} to url 20 times a second, N counting from 0, until
// the returned function is called; that returns the answers by N.
func steadyLoad(ctx context.Context, url string, headers map[string]string) func() []answer {
	return load(50*time.Millisecond, func(i int) answer {
		return fromHost(ctx, http.MethodPost, url, fmt.Sprintf(`{"id":%d}`, i), headers)
	})
}

// load calls send(N) once every period, N counting from 0, each call in its
// own goroutine so that a slow answer does not hold the next request back,
// until the returned function is called; that waits for the calls in flight
// and returns their results by N.
func load[T any](period time.Duration, send func(i int) T) func() []T {
	var (
		mu      sync.Mutex
		results []T
		wg      sync.WaitGroup
	)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			mu.Lock()
			results = append(results, *new(T))
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := send(i)
				mu.Lock()
				results[i] = r
				mu.Unlock()
			}()
		}
	}()
	return func() []T {
		close(done)
		<-stopped
		wg.Wait()
		return results
	}
}

// expectRunsComplete waits until every run that steadyLoad's answers say was
// accepted (202 with a Patchbay-Run-Id) answers GET /runs/{id} with want,
// formatted with the id the run was sent.
func expectRunsComplete(ctx context.Context, workflow string, answers []answer, want string) {
	GinkgoHelper()
	url := strings.TrimSuffix(hostURL(ctx, workflow), "/")
	for i, a := range answers {
		if a.Error != "" || a.Status != http.StatusAccepted {
			continue
		}
		runID := a.Headers["Patchbay-Run-Id"]
		Expect(runID).NotTo(BeEmpty(), "run %d has no id", i)
		Eventually(func(g Gomega) {
			r := fromHost(ctx, http.MethodGet, url+"/runs/"+runID, "", nil)
			g.Expect(r.Error).To(BeEmpty())
			g.Expect(r.Status).To(Equal(http.StatusOK), "run %d (%s): %s", i, runID, r.Body)
			g.Expect(r.Body).To(MatchJSON(fmt.Sprintf(want, i)))
		}).WithContext(ctx).WithTimeout(3 * time.Minute).WithPolling(time.Second).Should(Succeed())
	}
}

// expectReadyEndpoints waits until the Service has a ready endpoint.
func expectReadyEndpoints(ctx context.Context, service string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var slices discoveryv1.EndpointSliceList
		g.Expect(k8sClient.List(ctx, &slices, client.InNamespace(namespace), client.MatchingLabels{discoveryv1.LabelServiceName: service})).To(Succeed())
		ready := 0
		for _, sl := range slices.Items {
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		g.Expect(ready).To(BeNumerically(">", 0), "ready endpoints of %s", service)
	}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Succeed())
}

func expectWorkflowReady(ctx context.Context, name string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var wf v1alpha1.Workflow
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wf)).To(Succeed())
		g.Expect(wf.Status.ObservedGeneration).To(Equal(wf.Generation), "observedGeneration")
		ready := metaCondition(wf.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s Ready: %s: %s", name, ready.Reason, ready.Message)
	}).WithContext(ctx).WithTimeout(6 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}

func expectBrokerReady(ctx context.Context) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var sts appsv1.StatefulSet
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "default-nats"}, &sts)).To(Succeed())
		g.Expect(sts.Status.ReadyReplicas).To(Equal(int32(3)))
		var b v1alpha1.Broker
		g.Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "default"}, &b)).To(Succeed())
		ready := metaCondition(b.Status.Conditions, v1alpha1.ConditionReady)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "Broker Ready: %s: %s", ready.Reason, ready.Message)
	}).WithContext(ctx).WithTimeout(6 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())
}

func metaCondition(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// endpoint is the Workflow's status.endpoint, a cluster DNS name.
func endpoint(ctx context.Context, name string) string {
	GinkgoHelper()
	var wf v1alpha1.Workflow
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &wf)).To(Succeed())
	Expect(wf.Status.Endpoint).To(HavePrefix("http://"))
	return strings.TrimSuffix(wf.Status.Endpoint, "/")
}

// serviceHost is the endpoint's host: <service>.<namespace>.svc.
func serviceHost(ctx context.Context, name string) string {
	return strings.TrimPrefix(endpoint(ctx, name), "http://")
}

// hostURL reaches the endpoint from this machine: the node routes Service
// addresses, but this machine's resolver does not know cluster names.
func hostURL(ctx context.Context, name string) string {
	GinkgoHelper()
	svcName := strings.SplitN(serviceHost(ctx, name), ".", 2)[0]
	var svc corev1.Service
	Expect(k8sClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: svcName}, &svc)).To(Succeed())
	return "http://" + svc.Spec.ClusterIP + "/"
}

func natsPodIPs(ctx context.Context) []string {
	GinkgoHelper()
	var pods corev1.PodList
	Expect(k8sClient.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{"patchbay.dev/broker": "default", "patchbay.dev/component": "nats"})).To(Succeed())
	Expect(pods.Items).To(HaveLen(3))
	var ips []string
	for _, p := range pods.Items {
		Expect(p.Status.PodIP).NotTo(BeEmpty(), p.Name)
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

func getJSON(ctx context.Context, url string, v any) {
	GinkgoHelper()
	a := fromHost(ctx, http.MethodGet, url, "", nil)
	Expect(a.Error).To(BeEmpty(), url)
	Expect(a.Status).To(Equal(http.StatusOK), "%s: %s", url, a.Body)
	Expect(json.Unmarshal([]byte(a.Body), v)).To(Succeed(), url)
}
