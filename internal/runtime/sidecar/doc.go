// Package sidecar is the sidecar role: it fronts one step's app, bounds its
// concurrency, and in sync-chain calls the app and forwards its output to the
// next steps.
package sidecar
