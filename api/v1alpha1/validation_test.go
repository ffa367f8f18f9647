package v1alpha1_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// workflow returns a Workflow manifest with the given spec body (indented by two spaces).
func workflow(spec string) string {
	return "apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata:\n  name: wf\nspec:\n" + indent(spec)
}

func broker(spec string) string {
	return "apiVersion: patchbay.dev/v1alpha1\nkind: Broker\nmetadata:\n  name: default\nspec:\n" + indent(spec)
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// orchestrated is a valid sync-orchestrated spec with one step override point.
func orchestrated(extra string) string {
	return workflow(`
style: sync-orchestrated
steps:
- name: a
  image: demo:1
- name: b
  image: demo:1
  dependsOn: [a]
` + extra)
}

// withStep is a valid sync-orchestrated workflow whose single step carries the given fields.
func withStep(fields string) string {
	return workflow("style: sync-orchestrated\nsteps:\n- name: a\n  image: demo:1\n" + indent(fields))
}

func manySteps(n int) string {
	var b strings.Builder
	b.WriteString("style: sync-orchestrated\nsteps:\n")
	for i := range n {
		fmt.Fprintf(&b, "- name: s%d\n  image: demo:1\n", i)
	}
	return workflow(b.String())
}

var _ = Describe("Samples", func() {
	samples, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
	if err != nil {
		panic(err)
	}
	for _, sample := range samples {
		if filepath.Base(sample) == "kustomization.yaml" {
			continue
		}
		It("accepts "+filepath.Base(sample), func() {
			out, err := kubectl("apply", "--dry-run=server", "-n", "default", "-f", sample)
			Expect(err).NotTo(HaveOccurred(), out)
		})
	}

	// Switching style is editing one field: a Workflow keeps its
	// runTimeout, idempotencyWindow and deadLetters through a sync style,
	// which has no use for them.
	DescribeTable("keeps the async styles' settings in a sync style, for a switch back",
		func(fields string) {
			out, err := applyDryRun(orchestrated(fields))
			Expect(err).NotTo(HaveOccurred(), out)
		},
		Entry("runTimeout", "runTimeout: 30s"),
		Entry("entry.idempotencyWindow", "entry: {idempotencyWindow: 1h}"),
		Entry("deadLetters", "deadLetters: {retention: 24h}"),
	)

	It("has a sample for every style and a Broker", func() {
		var all strings.Builder
		for _, s := range samples {
			b, err := os.ReadFile(s)
			Expect(err).NotTo(HaveOccurred())
			all.Write(b)
		}
		for _, style := range []string{"sync-chain", "sync-orchestrated", "async-orchestrated", "choreography", "hybrid"} {
			Expect(all.String()).To(ContainSubstring("style: "+style), "no sample for style %s", style)
		}
		Expect(all.String()).To(ContainSubstring("kind: Broker"))
	})
})

var _ = Describe("Invalid manifests", func() {
	DescribeTable("are rejected at apply time with the field named",
		func(manifest string, wants ...string) {
			out, err := applyDryRun(manifest)
			Expect(err).To(HaveOccurred(), "expected a rejection, got: %s", out)
			for _, want := range wants {
				Expect(out).To(ContainSubstring(want))
			}
		},
		Entry("unknown style", workflow("style: telepathy\nsteps:\n- {name: a, image: demo:1}"),
			"spec.style", `Unsupported value: "telepathy"`),
		Entry("no steps (missing)", workflow("style: sync-orchestrated"), "spec.steps", "Required value"),
		Entry("no steps (empty)", workflow("style: sync-orchestrated\nsteps: []"), "spec.steps", "at least 1 item"),
		Entry("more than 64 steps", manySteps(65), "spec.steps", "at most 64 items"),
		Entry("two steps with the same name", workflow("style: sync-orchestrated\nsteps:\n- {name: a, image: demo:1}\n- {name: a, image: demo:2}"),
			"spec.steps[1]", "Duplicate value"),
		Entry("a step name that is not a DNS label", strings.Replace(withStep(""), "name: a\n", "name: Charge_1\n", 1),
			"spec.steps[0].name", "must be a DNS label"),
		Entry("a step without image", workflow("style: sync-orchestrated\nsteps:\n- {name: a}"),
			"spec.steps[0].image", "Required value"),
		Entry("a step named orchestrator", workflow("style: sync-orchestrated\nsteps:\n- {name: orchestrator, image: demo:1}"),
			"spec.steps[0].name", "reserved"),
		Entry("a step named gateway", workflow("style: sync-orchestrated\nsteps:\n- {name: gateway, image: demo:1}"),
			"spec.steps[0].name", "reserved"),
		Entry("port 0", withStep("port: 0"), "spec.steps[0].port", "greater than or equal to 1"),
		Entry("port 65536", withStep("port: 65536"), "spec.steps[0].port", "less than or equal to 65535"),
		Entry("port 15080 (the sidecar's)", withStep("port: 15080"), "spec.steps[0].port", "must not be 15080 or 15090"),
		Entry("port 15090 (the sidecar's)", withStep("port: 15090"), "spec.steps[0].port", "must not be 15080 or 15090"),
		Entry("dependsOn naming a step that does not exist", orchestrated("- name: c\n  image: demo:1\n  dependsOn: [ghost]"),
			"spec.steps", "dependsOn must name steps of this workflow"),
		Entry("a step that depends on itself", orchestrated("- name: c\n  image: demo:1\n  dependsOn: [c]"),
			"spec.steps[2]", "cannot depend on itself"),
		Entry("dependsOn in choreography", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
- {name: b, image: demo:1, dependsOn: [a]}`), "spec.steps[].dependsOn", "not allowed in style choreography"),
		Entry("subscribes in sync-orchestrated", orchestrated("- name: c\n  image: demo:1\n  subscribes: [x.y]"),
			"spec.steps[].subscribes", "only in styles choreography and hybrid"),
		Entry("emits in async-orchestrated", workflow("style: async-orchestrated\nsteps:\n- {name: a, image: demo:1, emits: [x.y]}"),
			"spec.steps[].emits", "only in styles choreography and hybrid"),
		Entry("sync-chain with zero roots", workflow(`
style: sync-chain
steps:
- {name: a, image: demo:1, dependsOn: [b]}
- {name: b, image: demo:1, dependsOn: [a]}`), "spec.steps", "exactly one root"),
		Entry("sync-chain with two roots", workflow(`
style: sync-chain
steps:
- {name: a, image: demo:1}
- {name: b, image: demo:1}`), "spec.steps", "exactly one root"),
		Entry("choreography without entry.event", workflow(`
style: choreography
entry: {completesOn: [order.done]}
steps:
- {name: a, image: demo:1, emits: [order.done]}`), "spec.entry.event", "required in style choreography"),
		Entry("choreography without entry at all", workflow(`
style: choreography
steps:
- {name: a, image: demo:1, emits: [order.done]}`), "spec.entry.event", "required in style choreography"),
		Entry("choreography with entry.sync true and no completesOn", workflow(`
style: choreography
entry: {sync: true, event: order.requested}
steps:
- {name: a, image: demo:1, subscribes: [order.requested]}`), "spec.entry.completesOn", "required in style choreography"),
		Entry("choreography with entry.sync defaulted and no completesOn", workflow(`
style: choreography
entry: {event: order.requested}
steps:
- {name: a, image: demo:1, subscribes: [order.requested]}`), "spec.entry.completesOn", "required in style choreography"),
		Entry("a subscription to an event nobody emits", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requestd], emits: [order.done]}`), "spec.steps[].subscribes", "no step emits"),
		Entry("completesOn in hybrid", workflow(`
style: hybrid
entry: {completesOn: [paid]}
steps:
- {name: a, image: demo:1, emits: [paid]}
- {name: b, image: demo:1, subscribes: [paid]}`), "spec.entry.completesOn", "only in style choreography"),
		Entry("entry.event in a sync style", orchestrated("entry: {event: order.requested}"), "spec.entry.event", "only in styles choreography and hybrid"),
		Entry("entry.sync false in a sync style", orchestrated("entry: {sync: false}"), "spec.entry.sync", "needs an async style"),
		Entry("runTimeout of 25h", workflow("style: async-orchestrated\nrunTimeout: 25h\nsteps:\n- {name: a, image: demo:1}"), "spec.runTimeout", "at most 24h"),
		Entry("runTimeout that is no duration", workflow("style: async-orchestrated\nrunTimeout: soon\nsteps:\n- {name: a, image: demo:1}"), "spec.runTimeout", "positive duration"),
		Entry("entry.idempotencyWindow over 24h", workflow("style: async-orchestrated\nentry: {idempotencyWindow: 48h}\nsteps:\n- {name: a, image: demo:1}"), "spec.entry.idempotencyWindow", "from 1s to 24h"),
		Entry("a dead-letter retention under 1h", workflow("style: async-orchestrated\ndeadLetters: {retention: 10m}\nsteps:\n- {name: a, image: demo:1}"), "spec.deadLetters.retention", "from 1h to 2160h"),
		Entry("a dead-letter retention over 90 days", workflow("style: async-orchestrated\ndeadLetters: {retention: 2200h}\nsteps:\n- {name: a, image: demo:1}"), "spec.deadLetters.retention", "from 1h to 2160h"),
		Entry("a choreography step that subscribes to nothing", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
- {name: b, image: demo:1}`), "spec.steps[].subscribes", "required for every step in style choreography"),
		Entry("hybrid without an orchestrated step", workflow(`
style: hybrid
entry: {event: order.requested}
steps:
- {name: a, image: demo:1, subscribes: [order.requested]}`), "spec.steps", "at least one orchestrated step"),
		Entry("sync-chain fan-in", workflow(`
style: sync-chain
steps:
- {name: a, image: demo:1}
- {name: b, image: demo:1, dependsOn: [a]}
- {name: c, image: demo:1, dependsOn: [a]}
- {name: d, image: demo:1, dependsOn: [b, c]}`), "spec.steps[].dependsOn", "follows exactly one step"),
		Entry("a step named entry beside spec.entry.event", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: entry, image: demo:1, subscribes: [order.requested], emits: [order.done]}`), "spec.steps[].name", "entry is reserved"),
		Entry("retry.initialDelay longer than retry.maxDelay", orchestrated("resilience: {retry: {initialDelay: 5s, maxDelay: 1s}}"),
			"spec.resilience.retry", "initialDelay must not be longer than"),
		Entry("a read model event that is not an event type", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: ["order done"], key: /orderId}`), "spec.readModel.events[0]", "must be event types"),
		Entry("zero timeout", orchestrated("resilience: {timeout: 0s}"), "resilience.timeout", "positive duration"),
		Entry("negative timeout", orchestrated("resilience: {timeout: -1s}"), "resilience.timeout", "positive duration"),
		Entry("a timeout that is not a duration", orchestrated("resilience: {timeout: soon}"), "resilience.timeout", "positive duration"),
		Entry("an envFrom item with both a ConfigMap and a Secret", withStep("envFrom: [{configMapRef: {name: cfg}, secretRef: {name: api}}]"),
			"spec.steps[0].envFrom[0]", "must set exactly one of configMapRef and secretRef"),
		Entry("an envFrom item with neither", withStep("envFrom: [{prefix: X_}]"),
			"spec.steps[0].envFrom[0]", "must set exactly one of configMapRef and secretRef"),
		Entry("an envFrom secretRef without a name", withStep("envFrom: [{secretRef: {optional: true}}]"),
			"spec.steps[0].envFrom[0]", "secretRef.name must name a Secret"),
		Entry("an env secretKeyRef without a name", withStep("env: [{name: A, valueFrom: {secretKeyRef: {key: k}}}]"),
			"spec.steps[0].env[0]", "secretKeyRef.name must name a Secret"),
		Entry("a zero step timeout", withStep("resilience: {timeout: 0ms}"), "spec.steps[0].resilience.timeout", "positive duration"),
		Entry("zero entry timeout", orchestrated("entry: {timeout: 0s}"), "spec.entry.timeout", "positive duration"),
		Entry("retry.attempts below 1", orchestrated("resilience: {retry: {attempts: 0}}"),
			"spec.resilience.retry.attempts", "greater than or equal to 1"),
		Entry("retry.attempts above 100", orchestrated("resilience: {retry: {attempts: 101}}"),
			"spec.resilience.retry.attempts", "less than or equal to 100"),
		Entry("an unknown backoff", orchestrated("resilience: {retry: {backoff: fibonacci}}"),
			"spec.resilience.retry.backoff", "Unsupported value"),
		Entry("circuitBreaker.consecutiveFailures below 1", orchestrated("resilience: {circuitBreaker: {consecutiveFailures: 0}}"),
			"spec.resilience.circuitBreaker.consecutiveFailures", "greater than or equal to 1"),
		Entry("bulkhead.maxConcurrent below 1", orchestrated("resilience: {bulkhead: {maxConcurrent: 0}}"),
			"spec.resilience.bulkhead.maxConcurrent", "greater than or equal to 1"),
		Entry("a step override with bulkhead.maxConcurrent below 1", withStep("resilience: {bulkhead: {maxConcurrent: -3}}"),
			"spec.steps[0].resilience.bulkhead.maxConcurrent", "greater than or equal to 1"),
		Entry("a path without a leading slash", withStep("path: charge"), "spec.steps[0].path", "must start with '/'"),
		Entry("a read model in a sync style", orchestrated("readModel: {events: [a.b], key: /id}"), "spec.readModel", "choreography or hybrid"),
		Entry("a read model key that is not a JSON pointer", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: [order.done], key: orderId}`), "spec.readModel.key", "JSON pointer"),
		Entry("an unknown read model mode", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: [order.done], key: /orderId, mode: append}`), "spec.readModel.mode", `Unsupported value: "append"`),
		Entry("read model fields of an event that is not projected", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: [order.done], key: /orderId, fields: [{event: order.requested, select: [/status]}]}`), "spec.readModel", "fields[].event must be one of spec.readModel.events"),
		Entry("read model fields that are not JSON pointers", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: [order.done], key: /orderId, fields: [{event: order.done, select: [status]}]}`), "spec.readModel.fields[0].select[0]", "must be JSON pointers"),
		Entry("read model fields with an empty select", workflow(`
style: choreography
entry: {event: order.requested, completesOn: [order.done]}
steps:
- {name: a, image: demo:1, subscribes: [order.requested], emits: [order.done]}
readModel: {events: [order.done], key: /orderId, fields: [{event: order.done, select: []}]}`), "spec.readModel.fields[0].select", "should have at least 1 items"),
		Entry("a workflow name with a dot", strings.Replace(withStep(""), "name: wf", "name: shop.checkout", 1),
			"metadata.name", "DNS label"),
		Entry("a workflow name over 47 characters", strings.Replace(withStep(""), "name: wf", "name: "+strings.Repeat("w", 48), 1),
			"metadata.name", "at most 47 characters"),
		Entry("a Broker with 2 replicas", broker("replicas: 2"), "spec.replicas", "Unsupported value: 2"),
		Entry("a Broker with disk storage", broker("jetstream: {storage: disk}"), "spec.jetstream.storage", `Unsupported value: "disk"`),
	)
})

var _ = Describe("Printer columns", func() {
	It("shows STYLE, READY, STEPS, ENDPOINT and AGE for Workflows", func() {
		sample := filepath.Join("..", "..", "config", "samples", "hybrid.yaml")
		out, err := kubectl("create", "-n", "default", "-f", sample)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = kubectl("get", "workflows", "-n", "default")
		Expect(err).NotTo(HaveOccurred(), out)
		header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		Expect(header).To(Equal([]string{"NAME", "STYLE", "READY", "STEPS", "ENDPOINT", "AGE"}))
		Expect(out).To(ContainSubstring("hybrid"))
	})

	It("shows REPLICAS, READY, URL and AGE for Brokers", func() {
		sample := filepath.Join("..", "..", "config", "samples", "broker.yaml")
		out, err := kubectl("create", "-n", "default", "-f", sample)
		Expect(err).NotTo(HaveOccurred(), out)
		out, err = kubectl("get", "brokers", "-n", "default")
		Expect(err).NotTo(HaveOccurred(), out)
		header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		Expect(header).To(Equal([]string{"NAME", "REPLICAS", "READY", "URL", "AGE"}))
	})
})
