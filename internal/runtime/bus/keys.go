package bus

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Every id or key that a caller or an event chooses, and that reaches the
// broker, is checked here first. A key travels in a subject: a KV read is a
// request on $JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>, a write a
// publish on $KV.<bucket>.<key>. The broker refuses a protocol line longer
// than its max_control_line (4096 bytes by default) by closing the
// connection, and the client does not reconnect after that error: one long
// key would cut a role off the broker for good. Other bytes (spaces, '*',
// '>', control characters) make a subject invalid or a wildcard.
//
// The bounds leave most of that line to the rest: the subject's prefix with
// the bucket name twice (bucket names are up to 64 bytes in a plan), the
// reply inbox (about 60) and the sizes.
const (
	// MaxRunIDLen bounds a run id: a generated one is a 36-character UUID,
	// and a caller's own (Patchbay-Run-Id) is an order or request id; it is
	// also repeated in message ids and the Location of every answer.
	MaxRunIDLen = 128
	// MaxReadModelKeyLen bounds a read-model key, in bytes of UTF-8 before
	// encoding: long enough for any business key (an e-mail address is at
	// most 254), and its base64 form stays under MaxKeyLen.
	MaxReadModelKeyLen = 256
	// MaxKeyLen bounds any KV key as stored.
	MaxKeyLen = 512
)

// KeyError is an id or key that may not reach the broker: Field names it as
// the caller knows it (such as "Patchbay-Run-Id header"), Rule says what is
// allowed. Its message does not repeat the key, which may be long.
type KeyError struct {
	Field string
	Rule  string
	// Problem is what is wrong with this key, such as "it has 4100 bytes".
	Problem string
}

func (e *KeyError) Error() string {
	return fmt.Sprintf("%s %s; %s", e.Field, e.Rule, e.Problem)
}

// CheckKey checks key against the rules of a NATS KV key: one or more of
// the characters [-/_=.a-zA-Z0-9], no '.' first or last, no "..", and at
// most maxLen bytes. field names the key in the error.
func CheckKey(field, key string, maxLen int) error {
	rule := fmt.Sprintf("may hold only the characters -/_=.a-zA-Z0-9 (not '.' first or last, nor \"..\"), at most %d of them", maxLen)
	bad := func(problem string) error { return &KeyError{Field: field, Rule: rule, Problem: problem} }
	switch {
	case key == "":
		return bad("it is empty")
	case len(key) > maxLen:
		return bad(fmt.Sprintf("it has %d bytes", len(key)))
	case key[0] == '.' || key[len(key)-1] == '.':
		return bad("it starts or ends with '.'")
	case strings.Contains(key, ".."):
		return bad(`it has ".."`)
	}
	if i := strings.IndexFunc(key, func(c rune) bool { return !kvKeyChar(c) }); i >= 0 {
		return bad(fmt.Sprintf("it has %s at byte %d", describe(key[i:]), i))
	}
	return nil
}

// CheckRunID checks a run id: 1 to MaxRunIDLen letters, digits, '-' and '_'.
// That is stricter than a KV key: a run id is also one path segment of
// /runs/{id} and joins with '.' and ':' into subjects and message ids.
func CheckRunID(field, id string) error {
	rule := fmt.Sprintf("may hold only the characters a-zA-Z0-9, '-' and '_', at most %d of them", MaxRunIDLen)
	bad := func(problem string) error { return &KeyError{Field: field, Rule: rule, Problem: problem} }
	switch {
	case id == "":
		return bad("it is empty")
	case len(id) > MaxRunIDLen:
		return bad(fmt.Sprintf("it has %d bytes", len(id)))
	}
	if i := strings.IndexFunc(id, func(c rune) bool { return !runIDChar(c) }); i >= 0 {
		return bad(fmt.Sprintf("it has %s at byte %d", describe(id[i:]), i))
	}
	return nil
}

// ReadModelKey maps a read-model key (a value from an event, or from GET
// /query/{key}) to its KV key: as is when it is a valid KV key, else base64url
// behind a prefix that no plain key of this form starts with, so that any
// UTF-8 text of 1 to MaxReadModelKeyLen bytes is a key.
func ReadModelKey(field, k string) (string, error) {
	rule := fmt.Sprintf("may be any UTF-8 text of 1 to %d bytes (characters outside -/_=.a-zA-Z0-9 are stored base64-encoded)", MaxReadModelKeyLen)
	switch {
	case k == "":
		return "", &KeyError{Field: field, Rule: rule, Problem: "it is empty"}
	case len(k) > MaxReadModelKeyLen:
		return "", &KeyError{Field: field, Rule: rule, Problem: fmt.Sprintf("it has %d bytes", len(k))}
	case !utf8.ValidString(k):
		return "", &KeyError{Field: field, Rule: rule, Problem: "it is not valid UTF-8"}
	}
	key := k
	if CheckKey(field, k, MaxReadModelKeyLen) != nil || strings.HasPrefix(k, b64Prefix) {
		key = b64Prefix + base64.RawURLEncoding.EncodeToString([]byte(k))
	}
	// Cannot fail for a key within the bounds above; kept as the last guard
	// in front of the broker.
	if err := CheckKey(field, key, MaxKeyLen); err != nil {
		return "", err
	}
	return key, nil
}

const b64Prefix = "_b64_"

func kvKeyChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '/' || c == '_' || c == '=' || c == '.'
}

func runIDChar(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// describe names the first character of s for an error, without echoing
// control characters or invalid UTF-8.
func describe(s string) string {
	r, _ := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError:
		return fmt.Sprintf("the byte %#x", s[0])
	case r < 0x20 || r == 0x7f:
		return fmt.Sprintf("the control character %U", r)
	default:
		return fmt.Sprintf("%q", r)
	}
}

// ReadModelKeyOf is the read-model key that ReadModelKey mapped to kvKey.
func ReadModelKeyOf(kvKey string) (string, bool) {
	enc, ok := strings.CutPrefix(kvKey, b64Prefix)
	if !ok {
		return kvKey, true
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", false
	}
	return string(b), true
}
