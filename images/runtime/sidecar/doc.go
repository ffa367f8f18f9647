// Command patchbay-sidecar is the sidecar role of patchbay-runtime alone
// (patchbay-sidecar sidecar --plan FILE --step NAME ...), the command of the
// sidecar container of every step's pod. It ships in the patchbay-runtime
// image beside patchbay-runtime. Linking only what the sidecar needs (no
// embedded NATS server, no compiler, no Kubernetes types) keeps its memory
// small: most of a Go process's resident memory at a light load is the
// binary's pages that package initialisation touched (docs/architecture.md,
// The runtime binaries).
package main
