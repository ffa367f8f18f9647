// Command demo-step is a small configurable step service: echo or JSON
// transform, with injected latency and failures. See internal/demostep.
package main
