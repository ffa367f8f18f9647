package gateway

import "testing"

func TestKVKeyKeepsPlainKeysAndEncodesTheRest(t *testing.T) {
	for in, want := range map[string]string{
		"o-1":        "o-1",
		"a/b.c_d=e":  "a/b.c_d=e",
		"with space": "_b64_d2l0aCBzcGFjZQ",
		".dot":       "_b64_LmRvdA",
		"_b64_x":     "_b64_X2I2NF94",
		"ünï":        "_b64_w7xuw68",
	} {
		if got := kvKey(in); got != want {
			t.Errorf("kvKey(%q) = %q, want %q", in, got, want)
		}
	}
}
