// Package dev runs the whole sync data plane of a Workflow on one machine:
// a sidecar per step, the orchestrator, and each step's app as a demo-step in
// this process, a command it starts, or a URL.
package dev
