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

// MaxRetryAfter bounds what ParseRetryAfter returns. No retry waits that long
// (retries wait at most the policy's maxDelay and the run's deadline); the
// bound keeps huge values from overflowing a time.Duration and keeps what is
// passed back to a caller sane.
const MaxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date,
// at most MaxRetryAfter. It returns 0 when the header is absent or unreadable.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseUint(v, 10, 64); err == nil {
		// Compare in seconds: s * time.Second overflows past ~292 years.
		if s >= uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(s) * time.Second
	} else if errors.Is(err, strconv.ErrRange) {
		return MaxRetryAfter // digits beyond uint64
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return min(d, MaxRetryAfter)
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
// asked for longer, but never more than the policy's longest delay
// (max(maxDelay, initialDelay)): a step's Retry-After is a hint, not a licence
// to park a message for an hour. Callers end the retries instead when
// RetryAfterTooLong. The async data plane naks a message with it, so one
// delivery is one attempt and the broker's redelivery is the retry.
func RetryDelay(r plan.Retry, attempt int, retryAfter time.Duration) time.Duration {
	d := r.InitialDelay.Duration
	limit := max(r.MaxDelay.Duration, d)
	if r.Backoff != "constant" {
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		d = min(d, limit)
	}
	return min(max(d, retryAfter), limit)
}

// RetryAfterTooLong reports whether a step's Retry-After asks for a longer
// pause than the policy allows (maxDelay) or than the run has left (remaining,
// ignored when 0 or less, that is when the run has no deadline). Such a failure
// ends the retries: it goes back to the caller, or to the dead letters, with
// the step's own answer, instead of the run waiting past its bounds.
func RetryAfterTooLong(r plan.Retry, retryAfter, remaining time.Duration) bool {
	return retryAfter > r.MaxDelay.Duration || (remaining > 0 && retryAfter > remaining)
}
