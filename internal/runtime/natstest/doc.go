// Package natstest starts an embedded NATS server with JetStream for the
// runtime's tests.
package natstest
