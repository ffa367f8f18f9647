// Package telemetry sets up the logs, Prometheus metrics and OpenTelemetry traces
// that every patchbay-runtime role shares.
package telemetry
