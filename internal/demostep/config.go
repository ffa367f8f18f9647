package demostep

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Modes of a demo step.
const (
	ModeEcho      = "echo"      // answer with the request body
	ModeTransform = "transform" // merge --set values into the request's JSON object
)

// Config is a demo step's behaviour, from its command line.
type Config struct {
	Addr string
	Name string
	Mode string
	// Set are the key/values merged into the input in transform mode, in order.
	Set []KeyValue
	// Latency is added to every call.
	Latency time.Duration
	// FailureRate is the probability (0..1) that a call fails with FailStatus.
	FailureRate float64
	// FailFirst fails the first N calls with FailStatus.
	FailFirst int
	// FailStatus is the status of an injected failure.
	FailStatus int
	// RetryAfter is sent as Retry-After with injected failures when positive.
	RetryAfter time.Duration
	// Status is the status of a successful answer.
	Status int
	// Hold keeps every call waiting until POST /_demo/release.
	Hold bool
	// Barrier is a URL (a /_demo/barrier of any demo step) every call joins
	// before answering: steps that must be in flight together prove it this way.
	Barrier        string
	BarrierTimeout time.Duration
	// MaxBody bounds the request body.
	MaxBody int64
	// Emit is the event type a successful answer names in Ce-Type (the
	// step contract's choice among the step's declared emits); empty sends
	// no Ce-Type.
	Emit string
	// EmitWhen are rules checked in order before Emit: the first whose key
	// has its value in the input object names the event instead, and the
	// step then answers its input unchanged (it did not do its work, such
	// as a payment that was declined).
	EmitWhen []EmitRule
}

// EmitRule is one --emit-when: when the input's Key is Value, emit Type.
type EmitRule struct {
	KeyValue
	Type string
}

type emitWhenFlag struct{ rules *[]EmitRule }

func (f emitWhenFlag) String() string { return "" }

func (f emitWhenFlag) Set(v string) error {
	i := strings.LastIndex(v, ":")
	if i <= 0 || i == len(v)-1 {
		return fmt.Errorf("want key=value:event.type, got %q", v)
	}
	var kv []KeyValue
	if err := (setFlag{&kv}).Set(v[:i]); err != nil {
		return fmt.Errorf("want key=value:event.type, got %q", v)
	}
	*f.rules = append(*f.rules, EmitRule{KeyValue: kv[0], Type: v[i+1:]})
	return nil
}

// KeyValue is one --set.
type KeyValue struct {
	Key   string
	Value json.RawMessage
}

type setFlag struct{ kv *[]KeyValue }

func (s setFlag) String() string { return "" }

func (s setFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	raw := json.RawMessage(val)
	if !json.Valid(raw) {
		raw, _ = json.Marshal(val) // not JSON: the value is a string
	}
	*s.kv = append(*s.kv, KeyValue{Key: k, Value: raw})
	return nil
}

// Parse reads a demo step's flags. args excludes the program name.
func Parse(args []string, stderr io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("demo-step", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defAddr := ":8080"
	if p := os.Getenv("PORT"); p != "" {
		defAddr = ":" + p
	}
	fs.StringVar(&c.Addr, "addr", defAddr, "listen address (default :$PORT, else :8080)")
	fs.StringVar(&c.Name, "name", "demo-step", "name shown in stats and logs")
	fs.StringVar(&c.Mode, "mode", ModeEcho, "echo: answer with the request body; transform: merge --set values into the request's JSON object")
	fs.Var(setFlag{&c.Set}, "set", "key=value merged into the input in transform mode; value is JSON if it parses, else a string (repeatable)")
	fs.DurationVar(&c.Latency, "latency", 0, "latency added to every call")
	fs.Float64Var(&c.FailureRate, "failure-rate", 0, "probability (0..1) that a call fails with --fail-status")
	fs.IntVar(&c.FailFirst, "fail-first", 0, "fail the first N calls with --fail-status")
	fs.IntVar(&c.FailStatus, "fail-status", 503, "status of an injected failure")
	fs.DurationVar(&c.RetryAfter, "retry-after", 0, "Retry-After sent with injected failures")
	fs.IntVar(&c.Status, "status", 200, "status of a successful answer")
	fs.BoolVar(&c.Hold, "hold", false, "hold every call until POST /_demo/release")
	fs.StringVar(&c.Barrier, "barrier", "", "URL of a /_demo/barrier every call joins before answering")
	fs.DurationVar(&c.BarrierTimeout, "barrier-timeout", 10*time.Second, "how long a call waits at --barrier")
	fs.Int64Var(&c.MaxBody, "max-body", 4<<20, "largest request body accepted, in bytes")
	fs.StringVar(&c.Emit, "emit", "", "event type a successful answer names in its Ce-Type header (one of the step's emits)")
	fs.Var(emitWhenFlag{&c.EmitWhen}, "emit-when", "key=value:event.type: when the input object's key has this value (JSON if it parses, else a string), answer the input unchanged with Ce-Type event.type instead (repeatable, first match wins)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var errs []error
	if c.Mode != ModeEcho && c.Mode != ModeTransform {
		errs = append(errs, fmt.Errorf("--mode must be echo or transform, got %q", c.Mode))
	}
	if c.FailureRate < 0 || c.FailureRate > 1 {
		errs = append(errs, fmt.Errorf("--failure-rate must be within 0..1, got %v", c.FailureRate))
	}
	if c.FailStatus < 100 || c.FailStatus > 599 || c.Status < 100 || c.Status > 599 {
		errs = append(errs, errors.New("--status and --fail-status must be HTTP statuses"))
	}
	return c, errors.Join(errs...)
}
