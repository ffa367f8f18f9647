// Package bus is the NATS JetStream side of the async data plane: connections, the workflow's stream and buckets, message headers and IDs, run records and dead letters.
package bus
