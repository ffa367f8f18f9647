// Package dev runs the whole data plane of a Workflow, in any style, on one
// machine: it compiles the Workflow, then runs a sidecar per step, the
// orchestrator and the gateway where the style has them, an embedded NATS
// JetStream server for the async styles, and each step's app as a demo-step in
// this process, a command it starts, or a URL.
package dev
