// Package cli is the command line of the data plane: one subcommand per role
// (Role), and the binaries that run a set of roles (Program). This package has
// the roles that run in a cluster (sidecar, orchestrator, gateway) and dlq;
// package devcli has dev and graph, which link the embedded NATS server and
// the compiler, so that the sidecar's binary (images/runtime/sidecar) can do
// without them.
package cli
