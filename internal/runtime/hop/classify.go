package hop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
	"github.com/patchbay-dev/patchbay/internal/runtime/resilience"
)

// maxDetail bounds how much of a step's own error body a contract.Error repeats.
const maxDetail = 512

// Classify turns a failed call into the run's error (docs/step-contract.md): a step's 4xx is
// the caller's problem and keeps its status; an open breaker is 503 with
// Retry-After; timeouts are 504; an overloaded step (429, 503) is 503; any other
// failure after the last attempt is 502.
func (t *Target) Classify(ctx context.Context, res resilience.Result[*Response]) *contract.Error {
	e := &contract.Error{Step: t.step, Attempts: res.Attempts}
	r := res.Last
	if r != nil {
		e.Status = r.Status
		e.Detail = detail(r)
		defer r.Release()
	}
	n := res.Attempts
	switch {
	case errors.Is(res.Err, resilience.ErrBreakerOpen):
		e.Code = http.StatusServiceUnavailable
		e.RetryAfter = max(t.edge.BreakerRemaining(), 1)
		e.Message = fmt.Sprintf("circuit breaker of edge %s is open: step %s failed repeatedly", t.Name, t.step)
		if n > 0 {
			e.Message += fmt.Sprintf("; it opened after %d attempts of this call", n)
		}
	case errors.Is(res.Err, context.DeadlineExceeded) && ctx.Err() != nil:
		e.Code = http.StatusGatewayTimeout
		e.Message = fmt.Sprintf("the run's deadline passed while calling step %s (%d attempts)", t.step, n)
	case errors.Is(res.Err, resilience.ErrTimeout):
		e.Code = http.StatusGatewayTimeout
		e.Message = fmt.Sprintf("step %s timed out: %d attempts of %s each", t.step, n, t.edge.AttemptTimeout())
	case errors.Is(res.Err, context.Canceled):
		e.Code = contract.StatusClientClosedRequest
		e.Message = "the caller canceled the run"
	case errors.Is(res.Err, contract.ErrTooLarge):
		e.Code = http.StatusBadGateway
		e.Message = fmt.Sprintf("step %s answered with a body over the limit: %v", t.step, res.Err)
	case res.Err != nil:
		e.Code = http.StatusBadGateway
		e.Message = fmt.Sprintf("step %s is unreachable after %d attempts: %v", t.step, n, res.Err)
	case r.Status >= 400 && !resilience.RetryableStatus(r.Status):
		e.Code = r.Status
		e.Message = fmt.Sprintf("step %s answered %d %s", t.step, r.Status, http.StatusText(r.Status))
	case r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable:
		e.Code = http.StatusServiceUnavailable
		e.RetryAfter = r.RetryAfter
		e.Message = fmt.Sprintf("step %s is overloaded: it answered %d after %d attempts", t.step, r.Status, n)
	case r.Status == http.StatusRequestTimeout:
		e.Code = http.StatusGatewayTimeout
		e.Message = fmt.Sprintf("step %s answered 408 after %d attempts", t.step, n)
	default:
		e.Code = http.StatusBadGateway
		e.Message = fmt.Sprintf("step %s answered %d %s after %d attempts", t.step, r.Status, http.StatusText(r.Status), n)
	}
	return e
}

func detail(r *Response) string {
	if r.Body == nil || r.Body.Len() == 0 {
		return ""
	}
	b := r.Body.Bytes()
	if len(b) > maxDetail {
		b = b[:maxDetail]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
	}
	return string(b)
}
