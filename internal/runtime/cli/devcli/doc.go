// Package devcli holds the roles of patchbay-runtime that run or draw a
// Workflow from its YAML on a developer's machine: dev (the whole workflow in
// one process, with an embedded NATS server for the async styles) and graph.
// They are apart from package cli so that the sidecar's binary, which has the
// roles of cli only, links neither the NATS server nor the compiler.
package devcli
