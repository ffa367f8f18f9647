// Package hop makes the HTTP calls between data-plane components and apps: the
// request headers of the step contract, the resilience of the edge, buffered
// bodies within limits, and the JSON error a failed run answers with.
package hop
