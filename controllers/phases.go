package controllers

import (
	"context"
	"errors"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// phase is one step of a reconcile. It reads and extends the reconcile's scope.
type phase[S any] struct {
	name string
	run  func(context.Context, S) (ctrl.Result, error)
}

// runPhases runs every phase in order, joins their errors and keeps the
// shortest requeue. A failed phase does not stop the next ones (each applies
// what it can), but failed tells them, so that pruning holds back and status
// withholds observedGeneration.
func runPhases[S any](ctx context.Context, s S, failed *bool, phases []phase[S]) (ctrl.Result, error) {
	var result ctrl.Result
	var errs []error
	for _, p := range phases {
		r, err := p.run(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			*failed = true
		}
		result = shortest(result, r)
	}
	return result, errors.Join(errs...)
}

// shortest is the result that requeues soonest; zero means no requeue.
func shortest(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0 || a.RequeueAfter <= b.RequeueAfter:
		return a
	default:
		return b
	}
}
