// Command patchbay-runtime is patchbay's data plane: one binary whose first
// argument picks the role (sidecar, orchestrator, gateway, dev), or graph,
// which draws a Workflow's topology as Mermaid or DOT.
package main
