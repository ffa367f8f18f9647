package controllers_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/api/v1alpha1"
	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/render"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/gateway"
	"github.com/patchbay-dev/patchbay/internal/runtime/natstest"
	"github.com/patchbay-dev/patchbay/internal/runtime/telemetry"
	"github.com/patchbay-dev/patchbay/internal/topology"
)

var _ = Describe("ReadModelCurrent", func() {
	ctx := context.Background()

	It("says what the Workflow's gateway says of its projection, and goes with the read model", func() {
		ns := newNamespace("read-model", nil)
		wf := &v1alpha1.Workflow{}
		readSample("choreography.yaml", wf)
		wf.Namespace = ns
		By("running the Workflow's gateway on a real broker, with one event projected")
		p, err := topology.Compile(wf)
		Expect(err).NotTo(HaveOccurred())
		log, err := telemetry.NewLogger(GinkgoWriter, "text", "info")
		Expect(err).NotTo(HaveOccurred())
		tracing, _ := telemetry.NewTracing(ctx, "", "test")
		tel := telemetry.New(log, tracing)
		conn, err := bus.Connect(bus.Options{URL: natstest.Start(GinkgoT()), Name: "test"}, log)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(conn.Close)
		// What the manager makes on a Broker (this server is none of its own).
		Expect(bus.EnsureResources(ctx, conn.JS, p, bus.DefaultStorage)).To(Succeed())
		gw, err := gateway.Start(ctx, gateway.Config{Plan: p, Conn: conn, Telemetry: tel})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(gw.Stop)
		srv := httptest.NewServer(gw)
		DeferCleanup(srv.Close)
		gatewayURL := plan.ServiceURL(ns, plan.ChildName(wf.Name, wf.Spec.Style, render.ComponentGateway))
		gateways.route(gatewayURL, srv.URL)
		for _, ev := range p.Events {
			if ev.Type == "order.confirmed" {
				_, err := conn.JS.PublishMsg(ctx, &nats.Msg{Subject: ev.Subject, Data: []byte(`{"orderId":"o-1"}`)})
				Expect(err).NotTo(HaveOccurred())
			}
		}
		Eventually(func() int {
			resp, err := http.Get(srv.URL + "/query/o-1")
			Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			return resp.StatusCode
		}).Should(Equal(http.StatusOK))

		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReadModelCurrent)).Should(
			Equal("Unknown/GatewayNotReady: The gateway orders-ch-gateway is not ready: it projects the events and says how far behind it is"))
		markWorkloadsReady(ctx, ns)
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReadModelCurrent)).Should(
			Equal("True/Current: Every event published so far is projected"))

		By("dropping the condition with the read model")
		updateWorkflow(ctx, ns, wf.Name, func(wf *v1alpha1.Workflow) { wf.Spec.ReadModel = nil })
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReadModelCurrent)).Should(BeEmpty())
	})

	It("is Unknown, naming the gateway's URL and the error, when the gateway does not answer", func() {
		ns := newNamespace("read-model-down", nil)
		wf := &v1alpha1.Workflow{}
		readSample("hybrid.yaml", wf)
		wf.Namespace = ns
		Expect(k8s.Create(ctx, wf)).To(Succeed())
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReadModelCurrent)).Should(HavePrefix("Unknown/GatewayNotReady"))
		markWorkloadsReady(ctx, ns)
		Eventually(workflowCondition(ctx, ns, wf.Name, v1alpha1.ConditionReadModelCurrent)).WithTimeout(time.Minute).Should(Equal(
			"Unknown/ReadModelUnreachable: Asking the gateway at http://shop-hy-gateway." + ns + ".svc/readmodel how far the read model is behind failed: " +
				`Get "http://shop-hy-gateway.` + ns + `.svc/readmodel": no gateway runs at shop-hy-gateway.` + ns + `.svc in this test`))
	})
})
