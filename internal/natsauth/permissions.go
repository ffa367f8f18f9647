package natsauth

import (
	"github.com/nats-io/jwt/v2"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// WorkflowPermissions are what a workflow's user may publish and subscribe to:
// the workflow's own subjects (pb.<namespace>.<workflow>.>), its own reply
// inbox (bus.InboxPrefix), and the JetStream API calls on its own streams
// (the workflow's and its dead letters'), their consumers and its KV buckets
// (runs, idempotency keys, read model) only. Nothing lets it list, read, change or
// delete another workflow's stream, consumers or buckets.
//
// It may not create, update, purge or delete a stream, its own included: the
// subjects of a stream are in the create request, which no permission can
// check, so a workflow allowed to create its own stream (or bucket, a stream
// KV_<bucket>) could make it capture another workflow's subjects. The
// manager creates and updates the stream and buckets (bus.EnsureResources);
// the roles only look them up.
//
// The list is as short as it can be: a user's JWT travels in the CONNECT
// line, which the server bounds (max_control_line in NATSConfig).
func WorkflowPermissions(p *plan.Plan) *jwt.Permissions {
	inbox := bus.InboxPrefix(p)
	pub := []string{
		p.Stream.Subjects[0],
		// The gateway's inbox, where the orchestrator answers a waiting caller.
		inbox + ".>",
		"$JS.API.INFO",
	}
	// JetStream API on one stream: its info, reads of its messages, its
	// consumers and their deliveries; acks go to $JS.ACK subjects named
	// after it.
	stream := func(name string) {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+name,
			"$JS.API.STREAM.MSG.GET."+name,
			"$JS.API.DIRECT.GET."+name+".>",
			"$JS.API.CONSUMER.*."+name+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+name+".>",
			"$JS.ACK."+name+".>",
		)
	}
	stream(p.Stream.Name)
	if p.Stream.DeadLetterStream != "" {
		stream(p.Stream.DeadLetterStream)
	}
	buckets := []string{p.Stream.RunsBucket}
	if p.Stream.IdempotencyBucket != "" {
		buckets = append(buckets, p.Stream.IdempotencyBucket)
	}
	if p.ReadModel != nil {
		buckets = append(buckets, p.ReadModel.Bucket)
	}
	for _, b := range buckets {
		stream("KV_" + b)
		pub = append(pub, "$KV."+b+".>")
	}
	return &jwt.Permissions{
		Pub: jwt.Permission{Allow: pub},
		Sub: jwt.Permission{Allow: []string{p.Stream.Subjects[0], inbox + ".>"}},
	}
}

// NewWorkflowUser mints the user of the workflow p describes.
func (b *Broker) NewWorkflowUser(p *plan.Plan) (*User, error) {
	return b.NewUser(p.Namespace+"/"+p.Workflow, WorkflowPermissions(p), false)
}
