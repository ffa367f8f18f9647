// Package render turns a compiled Plan, or a Broker, and the operator's settings into complete Kubernetes objects; it never talks to a cluster.
package render
