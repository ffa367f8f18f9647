package bus

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckKeyFollowsTheKVKeyRules(t *testing.T) {
	for _, ok := range []string{"o-1", "a/b.c_d=e", "A.b.C", strings.Repeat("k", 512)} {
		if err := CheckKey("key", ok, MaxKeyLen); err != nil {
			t.Errorf("CheckKey(%.20q) = %v, want nil", ok, err)
		}
	}
	for bad, problem := range map[string]string{
		"":                        "empty",
		strings.Repeat("k", 513):  "513 bytes",
		".a":                      "starts or ends",
		"a.":                      "starts or ends",
		"a..b":                    `".."`,
		"a b":                     `' ' at byte 1`,
		"a*":                      `'*' at byte 1`,
		"a>":                      `'>' at byte 1`,
		"a\x01":                   "control character U+0001",
		"ü":                       `'ü' at byte 0`,
		"a\xff":                   "byte 0xff",
		strings.Repeat("k", 4100): "4100 bytes",
	} {
		err := CheckKey("the key", bad, MaxKeyLen)
		var ke *KeyError
		if !errors.As(err, &ke) {
			t.Errorf("CheckKey(%.20q) = %v, want a KeyError", bad, err)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "the key may hold only the characters") || !strings.Contains(msg, "at most 512") || !strings.Contains(msg, problem) {
			t.Errorf("CheckKey(%.20q) = %q, want the field, the rule and %q", bad, msg, problem)
		}
		if len(msg) > 300 {
			t.Errorf("CheckKey(%.20q) echoes the key: %d bytes", bad, len(msg))
		}
	}
}

func TestCheckRunIDIsStricterThanAKey(t *testing.T) {
	for _, ok := range []string{"0b8e4a4e-6d4f-4f6a-9c1e-2b1f0c3d4e5f", "order_42", strings.Repeat("r", 128)} {
		if err := CheckRunID("run id", ok); err != nil {
			t.Errorf("CheckRunID(%.20q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("r", 129), "a.b", "a/b", "a=b", "a b", "a*", "a>", "a:b", "ü", "a\tb"} {
		err := CheckRunID("Patchbay-Run-Id header", bad)
		if err == nil || !strings.HasPrefix(err.Error(), "Patchbay-Run-Id header may hold only") || !strings.Contains(err.Error(), "at most 128") {
			t.Errorf("CheckRunID(%.20q) = %v", bad, err)
		}
	}
}

func TestReadModelKeyKeepsPlainKeysAndEncodesTheRest(t *testing.T) {
	for in, want := range map[string]string{
		"o-1":        "o-1",
		"a/b.c_d=e":  "a/b.c_d=e",
		"with space": "_b64_d2l0aCBzcGFjZQ",
		".dot":       "_b64_LmRvdA",
		"a..b":       "_b64_YS4uYg",
		"_b64_x":     "_b64_X2I2NF94",
		"ünï":        "_b64_w7xuw68",
	} {
		got, err := ReadModelKey("read-model key", in)
		if err != nil || got != want {
			t.Errorf("ReadModelKey(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	// The longest key, all of it encoded, is still a valid KV key.
	got, err := ReadModelKey("read-model key", strings.Repeat("\U0010FFFF", MaxReadModelKeyLen/4))
	if err != nil || CheckKey("k", got, MaxKeyLen) != nil {
		t.Errorf("the longest encoded key: %d bytes, %v", len(got), err)
	}
	for bad, problem := range map[string]string{
		"":                        "empty",
		strings.Repeat("k", 257):  "257 bytes",
		"\xff":                    "not valid UTF-8",
		strings.Repeat("ü", 4100): "8200 bytes",
	} {
		_, err := ReadModelKey("read-model key", bad)
		if err == nil || !strings.HasPrefix(err.Error(), "read-model key may be any UTF-8 text of 1 to 256 bytes") || !strings.Contains(err.Error(), problem) {
			t.Errorf("ReadModelKey(%.20q) = %v, want %q", bad, err, problem)
		}
	}
}

func TestReadModelKeyOfInvertsReadModelKey(t *testing.T) {
	for _, k := range []string{"o-7", "with space", "ü/ä", "_b64_x", "a.b"} {
		kv, err := ReadModelKey("key", k)
		if err != nil {
			t.Fatalf("%q: %v", k, err)
		}
		if got, ok := ReadModelKeyOf(kv); !ok || got != k {
			t.Errorf("ReadModelKeyOf(%q) = %q, %v; want %q", kv, got, ok, k)
		}
	}
	if _, ok := ReadModelKeyOf("_b64_!!"); ok {
		t.Error("an undecodable key decoded")
	}
}
