package serve

import (
	"fmt"
	"net/http"
	"time"

	"github.com/failsafe-go/failsafe-go/bulkhead"

	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

// BulkheadRetryAfter is the Retry-After of a request refused by a full inbound
// bulkhead: requests are short-lived, so a permit is usually free again soon.
const BulkheadRetryAfter = time.Second

// Bulkhead bounds the requests next serves at once, as the step sidecars'
// bulkhead bounds their app's: a request over maxConcurrent is answered 503
// with Retry-After and Patchbay-Rejected at once, before its body is read.
// who names the bounded role in the error; onReject, when set, counts a refusal.
func Bulkhead(who string, maxConcurrent int32, next http.Handler, onReject func()) http.Handler {
	n := max(1, maxConcurrent)
	b := bulkhead.New[any](uint(n))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !b.TryAcquirePermit() {
			if onReject != nil {
				onReject()
			}
			(&contract.Error{Code: http.StatusServiceUnavailable, Rejected: true, RetryAfter: BulkheadRetryAfter,
				RunID:   r.Header.Get(contract.HeaderRunID),
				Message: fmt.Sprintf("%s is at its concurrency limit (bulkhead maxConcurrent %d)", who, n)}).Write(w)
			return
		}
		defer b.ReleasePermit()
		next.ServeHTTP(w, r)
	})
}
