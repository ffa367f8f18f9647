// Package plan defines the Plan: the compiled form of a Workflow and the only
// contract between the control plane (render, controllers) and the data plane
// (patchbay-runtime). It imports only the standard library, so the roles that
// run in a cluster (sidecar, orchestrator, gateway) read a plan without
// linking the API types or any Kubernetes library; only the dev role, which
// compiles a Workflow itself, links them.
package plan
