// Package demostep is a small configurable step service (echo or JSON transform,
// injected latency and failures, hooks for tests to observe concurrency and
// how often each message, by Ce-Id, reached it) used by the samples, the
// tests, the demo and the benchmarks.
package demostep
