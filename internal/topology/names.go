package topology

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// Bounds on generated names.
const (
	// maxNATSNameLen bounds stream, consumer and bucket names. JetStream allows
	// more, but these names become file names on the broker's volume and appear
	// in every log line; longer ones are cut and given a hash suffix.
	maxNATSNameLen = 64
	// hashLen is the length of the hex suffix that keeps cut names unique.
	hashLen = 8
)

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	eventType   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	jsonPointer = regexp.MustCompile(`^(/([^/~]|~[01])*)+$`)
	// natsName is what patchbay allows in stream, consumer and bucket names: a
	// subset of what JetStream accepts (no '.', '*', '>', whitespace or path
	// separators) that is also a valid KV bucket name.
	natsName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

const maxEventTypeLen = 253

func isDNSLabel(s string) bool { return len(s) <= plan.MaxNameLen && dnsLabel.MatchString(s) }

func isEventType(s string) bool { return len(s) <= maxEventTypeLen && eventType.MatchString(s) }

// subjects builds the subjects of one workflow (docs/architecture.md, Names and ports). Namespace,
// workflow and step names are DNS labels and event types dot-separated words,
// so every token is non-empty and free of wildcards and whitespace.
type subjects struct{ prefix string }

func newSubjects(namespace, workflow string) subjects {
	return subjects{prefix: "pb." + namespace + "." + workflow}
}

func (s subjects) all() string                { return s.prefix + ".>" }
func (s subjects) commands() string           { return s.prefix + ".cmd" }
func (s subjects) results() string            { return s.prefix + ".res" }
func (s subjects) events() string             { return s.prefix + ".evt" }
func (s subjects) deadLetter() string         { return s.prefix + ".dlq" }
func (s subjects) start() string              { return s.prefix + ".start" }
func (s subjects) output() string             { return s.prefix + ".out" }
func (s subjects) deadline() string           { return s.prefix + ".deadline" }
func (s subjects) command(step string) string { return s.commands() + "." + step }
func (s subjects) result(step string) string  { return s.results() + "." + step }
func (s subjects) event(typ string) string    { return s.events() + "." + typ }

// JetStream names. Namespace, workflow and step names are DNS labels, which
// never contain '_', so joining their parts with '_' keeps names of different
// objects apart; boundedName keeps them short.

func streamName(namespace, workflow string) string {
	return boundedName("pb_"+namespace+"_"+workflow, "stream\x00"+namespace+"\x00"+workflow, false)
}

func runsBucketName(namespace, workflow string) string {
	return boundedName("pb_"+namespace+"_"+workflow+"_runs", "runs\x00"+namespace+"\x00"+workflow, false)
}

func idempotencyBucketName(namespace, workflow string) string {
	return boundedName("pb_"+namespace+"_"+workflow+"_idem", "idem\x00"+namespace+"\x00"+workflow, false)
}

func deadLetterStreamName(namespace, workflow string) string {
	return boundedName("pb_"+namespace+"_"+workflow+"_dlq", "dlq\x00"+namespace+"\x00"+workflow, false)
}

func readModelBucketName(namespace, workflow string) string {
	return boundedName("pb_"+namespace+"_"+workflow+"_readmodel", "readmodel\x00"+namespace+"\x00"+workflow, false)
}

// readModelDurable is the projector's consumer. It has no '_', so no step
// consumer (whose names all contain one) can take it.
const readModelDurable = "readmodel"

// The runtime roles' own consumers; like readModelDurable they have no '_'.
const (
	orchestratorDurable = "orchestrator"
	completionDurable   = "completion"
	deadlineDurable     = "deadline"
)

// commandDurable is a step's consumer of its command subject.
func commandDurable(step string) string {
	return boundedName(step+"_cmd", "cmd\x00"+step, false)
}

// eventDurable is a step's consumer of one event type. Dots become '_'; an
// event type that already has '_' would then be ambiguous (a.b and a_b), so it
// always gets a hash suffix.
func eventDurable(step, typ string) string {
	return boundedName(step+"_evt_"+strings.ReplaceAll(typ, ".", "_"), "evt\x00"+step+"\x00"+typ, strings.Contains(typ, "_"))
}

// boundedName returns name when it is short enough and unambiguous; otherwise
// its first characters and a hash of identity, the full unambiguous identity.
func boundedName(name, identity string, ambiguous bool) string {
	if !ambiguous && len(name) <= maxNATSNameLen {
		return name
	}
	keep := min(len(name), maxNATSNameLen-hashLen-1)
	return name[:keep] + "_" + shortHash(identity)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLen]
}

// BrokerResources are the names of what a workflow may hold on its Broker:
// its stream (with its consumers), its dead-letter stream and its KV buckets
// (the runs, the idempotency keys and the read model). They depend on the namespace and name only, so that the manager can
// delete them without a plan, such as for a Workflow whose spec no longer
// compiles.
type BrokerResources struct {
	Stream      string
	DeadLetters string
	Buckets     []string
}

// WorkflowBrokerResources are the BrokerResources of a workflow.
func WorkflowBrokerResources(namespace, workflow string) BrokerResources {
	return BrokerResources{
		Stream:      streamName(namespace, workflow),
		DeadLetters: deadLetterStreamName(namespace, workflow),
		Buckets:     []string{runsBucketName(namespace, workflow), idempotencyBucketName(namespace, workflow), readModelBucketName(namespace, workflow)},
	}
}
