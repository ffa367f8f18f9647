// Package contract is what the runtime roles agree on, over HTTP and over the
// bus (docs/step-contract.md): the Patchbay-* header names, the run error with
// its HTTP status, the CloudEvents binary-mode headers of a call, the merging of
// step outputs into one JSON object, and request and answer bodies read within
// the size limit. It makes no calls itself: the HTTP edge (proxying,
// classification, bulkheads) is package hop, the bus is package bus.
package contract
