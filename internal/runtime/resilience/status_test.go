package resilience

import (
	"net/http"
	"testing"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

func TestRetryableStatus(t *testing.T) {
	for code, want := range map[int]bool{
		200: false, 201: false, 302: false, 400: false, 401: false, 404: false, 409: false, 422: false,
		408: true, 429: true, 500: true, 502: true, 503: true, 504: true,
	} {
		if got := RetryableStatus(code); got != want {
			t.Errorf("RetryableStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"3":                             3 * time.Second,
		"-1":                            0,
		"abc":                           0,
		"3600":                          time.Hour,
		"86400":                         MaxRetryAfter,
		"99999999999":                   MaxRetryAfter, // overflowed time.Duration
		"9223372036854775807":           MaxRetryAfter,
		"99999999999999999999":          MaxRetryAfter, // beyond int64
		"Fri, 31 Dec 9999 23:59:59 GMT": MaxRetryAfter,
		now.Add(7 * time.Second).Format(http.TimeFormat): 7 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):    0,
	} {
		if got := ParseRetryAfter(in, now); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestFormatRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", 30 * time.Second: "30"} {
		if got := FormatRetryAfter(d); got != want {
			t.Errorf("FormatRetryAfter(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRetryDelayFollowsTheBackoffAndRetryAfter(t *testing.T) {
	exp := plan.Retry{Attempts: 5, Backoff: "exponential", InitialDelay: plan.D(100 * time.Millisecond), MaxDelay: plan.D(350 * time.Millisecond)}
	for _, tc := range []struct {
		r          plan.Retry
		attempt    int
		retryAfter time.Duration
		want       time.Duration
	}{
		{exp, 1, 0, 100 * time.Millisecond},
		{exp, 2, 0, 200 * time.Millisecond},
		{exp, 3, 0, 350 * time.Millisecond},
		{exp, 9, 0, 350 * time.Millisecond},
		{exp, 1, 300 * time.Millisecond, 300 * time.Millisecond},
		{exp, 1, 2 * time.Second, 350 * time.Millisecond}, // capped by maxDelay
		{exp, 1, MaxRetryAfter, 350 * time.Millisecond},
		{plan.Retry{Backoff: "constant", InitialDelay: plan.D(50 * time.Millisecond)}, 4, 0, 50 * time.Millisecond},
	} {
		if got := RetryDelay(tc.r, tc.attempt, tc.retryAfter); got != tc.want {
			t.Errorf("RetryDelay(%s, attempt %d, retry-after %s) = %s, want %s", tc.r.Backoff, tc.attempt, tc.retryAfter, got, tc.want)
		}
	}
}

func TestRetryAfterTooLong(t *testing.T) {
	r := plan.Retry{Backoff: "exponential", InitialDelay: plan.D(100 * time.Millisecond), MaxDelay: plan.D(10 * time.Second)}
	for _, tc := range []struct {
		retryAfter, remaining time.Duration
		want                  bool
	}{
		{time.Second, 0, false},
		{10 * time.Second, 0, false},
		{11 * time.Second, 0, true},              // past maxDelay
		{time.Hour, 0, true},                     // past maxDelay
		{5 * time.Second, 2 * time.Second, true}, // past the run's deadline
		{time.Second, 2 * time.Second, false},
	} {
		if got := RetryAfterTooLong(r, tc.retryAfter, tc.remaining); got != tc.want {
			t.Errorf("RetryAfterTooLong(%s, remaining %s) = %v, want %v", tc.retryAfter, tc.remaining, got, tc.want)
		}
	}
}
