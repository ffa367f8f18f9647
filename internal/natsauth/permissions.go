package natsauth

import (
	"github.com/nats-io/jwt/v2"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

// WorkflowPermissions are what a workflow's user may publish and subscribe to:
// the workflow's own subjects (pb.<namespace>.<workflow>.>), its own reply
// inbox (bus.InboxPrefix), and the JetStream API calls on its own stream, its
// consumers and its KV buckets only. Nothing lets it list, read or delete
// another workflow's stream, consumers or buckets, nor delete its own: the
// manager deletes them when the Workflow goes.
func WorkflowPermissions(p *plan.Plan) *jwt.Permissions {
	inbox := bus.InboxPrefix(p)
	pub := []string{
		p.Stream.Subjects[0],
		// The gateway's inbox, where the orchestrator answers a waiting caller.
		inbox + ".>",
		"$JS.API.INFO",
	}
	// JetStream API on one stream: info, create or update, and its consumers;
	// acks and flow control go to $JS.ACK / $JS.FC subjects named after it.
	stream := func(name string, kv bool) {
		pub = append(pub,
			"$JS.API.STREAM.INFO."+name,
			"$JS.API.STREAM.CREATE."+name,
			"$JS.API.STREAM.UPDATE."+name,
			"$JS.API.STREAM.MSG.GET."+name,
			"$JS.API.DIRECT.GET."+name,
			"$JS.API.DIRECT.GET."+name+".>",
			"$JS.API.CONSUMER.CREATE."+name,
			"$JS.API.CONSUMER.CREATE."+name+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+name+".>",
			"$JS.API.CONSUMER.INFO."+name+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+name+".>",
			"$JS.ACK."+name+".>",
			"$JS.FC."+name+".>",
		)
		if kv {
			// A KV watch is an ordered consumer, which the client deletes and
			// recreates when it falls behind.
			pub = append(pub, "$JS.API.CONSUMER.DELETE."+name+".>")
		}
	}
	stream(p.Stream.Name, false)
	buckets := []string{p.Stream.RunsBucket}
	if p.ReadModel != nil {
		buckets = append(buckets, p.ReadModel.Bucket)
	}
	for _, b := range buckets {
		stream("KV_"+b, true)
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
