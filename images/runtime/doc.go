// Command patchbay-runtime is patchbay's data plane: one binary whose first
// argument picks the role (sidecar, orchestrator, gateway, dev).
package main
