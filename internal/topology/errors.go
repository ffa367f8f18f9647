package topology

import (
	"fmt"
	"strings"
)

// Reason classifies a Problem so that callers can react to a kind of problem
// (the controller maps ReasonNameTooLong to its own condition reason) without
// parsing messages.
type Reason string

const (
	// ReasonInvalidField means a field has a value the API would refuse (a name that is
	// not a DNS label, a non-positive duration, an unknown style).
	ReasonInvalidField Reason = "InvalidField"
	// ReasonDuplicateStep means two steps share a name.
	ReasonDuplicateStep Reason = "DuplicateStep"
	// ReasonUnknownDependency means dependsOn names a step that does not exist.
	ReasonUnknownDependency Reason = "UnknownDependency"
	// ReasonDependencyCycle means the dependsOn graph has a cycle.
	ReasonDependencyCycle Reason = "DependencyCycle"
	// ReasonStyleRule means the spec breaks a rule of its style (a sync-chain with
	// two roots, dependsOn in a choreography, a hybrid step depending on an event step).
	ReasonStyleRule Reason = "StyleRule"
	// ReasonUnemittedEvent means an event is subscribed to, completes a run or is
	// projected, but nothing emits it.
	ReasonUnemittedEvent Reason = "UnemittedEvent"
	// ReasonUnreachableStep means no chain of events from the entry reaches a step.
	ReasonUnreachableStep Reason = "UnreachableStep"
	// ReasonEventLoop means steps emit events to each other in a loop, so every run
	// would publish events forever.
	ReasonEventLoop Reason = "EventLoop"
	// ReasonNameTooLong means a child object name would pass plan.MaxNameLen characters.
	ReasonNameTooLong Reason = "NameTooLong"
	// ReasonNameCollision means two generated JetStream names coincide.
	ReasonNameCollision Reason = "NameCollision"
)

// Problem is one reason the compiler refuses a Workflow.
type Problem struct {
	Reason Reason
	// Steps are the steps involved, in the order the message names them.
	Steps []string
	// Message is a stable, human sentence that names the steps and fields involved.
	Message string
}

// Error is returned by Compile for a Workflow it refuses. It lists every
// problem found, in a stable order, so that one status update shows them all.
type Error struct {
	Problems []Problem
}

// Error joins the problem messages with "; " so that the result fits a
// condition message on one line.
func (e *Error) Error() string {
	msgs := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		msgs[i] = p.Message
	}
	return strings.Join(msgs, "; ")
}

// Has reports whether any problem has the reason.
func (e *Error) Has(r Reason) bool {
	for _, p := range e.Problems {
		if p.Reason == r {
			return true
		}
	}
	return false
}

// problems collects Problems while the compiler checks a spec.
type problems struct{ list []Problem }

func (ps *problems) addf(r Reason, steps []string, format string, args ...any) {
	ps.list = append(ps.list, Problem{Reason: r, Steps: steps, Message: fmt.Sprintf(format, args...)})
}

func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &Error{Problems: ps.list}
}
