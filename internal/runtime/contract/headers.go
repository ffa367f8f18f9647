package contract

// Headers of the data plane besides the CloudEvents ones (cloudevents.go). On
// the bus they are NATS headers in canonical MIME form, so that http.Header
// reads them.
const (
	// HeaderRunID is the run a request or message belongs to.
	HeaderRunID = "Patchbay-Run-Id"
	// HeaderRejected marks an answer given without calling the app (a full
	// bulkhead), so that a caller knows a retry cannot run the step twice.
	HeaderRejected = "Patchbay-Rejected"
	// HeaderFrom names the step whose sidecar forwards a sync-chain hop.
	HeaderFrom = "Patchbay-From"
	// HeaderStatus is ResultOK or ResultFailed on a result message; a failed
	// one carries the run's Error as its body.
	HeaderStatus = "Patchbay-Status"
	// HeaderStep names the step that produced a result, event or dead letter.
	HeaderStep = "Patchbay-Step"
)

// Values of HeaderStatus.
const (
	ResultOK     = "ok"
	ResultFailed = "failed"
)

// StatusClientClosedRequest is the code of a run whose caller went away before
// the answer (nginx's 499): nobody reads the answer, so it is neither logged
// as a failure nor retried, and an async sidecar that gets it is stopping and
// hands the message back to the broker.
const StatusClientClosedRequest = 499
