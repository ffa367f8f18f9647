// Package hop makes the HTTP calls between data-plane components and apps:
// one Target per edge, under the edge's resilience policies, classifying a
// failed call into the run's contract.Error (docs/step-contract.md), and the
// process's shared Transport. What the calls carry (headers, the error, the
// CloudEvents attributes, merged outputs) is package contract.
package hop
