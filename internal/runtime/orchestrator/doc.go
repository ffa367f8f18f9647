// Package orchestrator is the orchestrator role. In sync-orchestrated it runs a
// plan's DAG over HTTP, each step as soon as its dependencies answered (New). In
// async-orchestrated and hybrid it drives the orchestrated steps over the bus
// (StartAsync): stateless, with each run's state in a JetStream key-value
// bucket, so any replica continues any run.
package orchestrator
