package resilience

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// RetryableStatus reports whether a step's answer is retried: 408, 429 and every 5xx.
// Any other 4xx fails the run at once; 1xx-3xx are not failures.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// Permanent marks an attempt error that retrying cannot fix, such as a response
// over the size limit.
func Permanent(err error) error { return permanentError{err} }

type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// retryableError reports whether an attempt that ended with err (and no response)
// is worth another try: connect errors and timeouts are, a canceled caller is not.
func retryableError(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled) && !IsPermanent(err)
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// It returns 0 when the header is absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// FormatRetryAfter renders a delay as Retry-After seconds, rounded up and at least 1:
// a caller told "0" would retry at once against a breaker that is still open.
func FormatRetryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// RetryDelay is the pause before attempt+1 under r, where attempt (1-based)
// just failed: the backoff of the policy, or the step's Retry-After when it
// asked for longer. The async data plane naks a message with it, so one
// delivery is one attempt and the broker's redelivery is the retry.
func RetryDelay(r plan.Retry, attempt int, retryAfter time.Duration) time.Duration {
	d := r.InitialDelay.Duration
	if r.Backoff != "constant" {
		limit := max(r.MaxDelay.Duration, d)
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
	}
	return max(d, retryAfter)
}
