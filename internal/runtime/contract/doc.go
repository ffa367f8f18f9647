// Package contract is what the runtime roles agree on, over HTTP and over the
// bus (docs/step-contract.md): the Patchbay-* header names, the run error with
// its HTTP status as a field of its JSON, the CloudEvents binary-mode headers of
// a call, the merging of step outputs into one JSON object, bodies read within
// the size limit, and where a step is reached (Resolver). It makes no calls
// itself: the HTTP edge (calls under resilience policies, classification) is
// package hop, the inbound bulkhead is in package serve, the bus is package bus.
package contract
