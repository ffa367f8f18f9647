// Package orchestrator is the orchestrator role of sync-orchestrated: it runs a
// plan's DAG level by level over HTTP, the steps of a level at once.
package orchestrator
