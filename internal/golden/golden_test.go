package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the errors it is given.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheckDirReportsEveryDifference(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.MkdirAll(filepath.Join("testdata", "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"same": "a\n", "changed": "a\nb\n", "stale": "x"} {
		if err := os.WriteFile(filepath.Join("testdata", "d", name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &recorder{TB: t}
	CheckDir(r, "d", map[string][]byte{"same": []byte("a\n"), "changed": []byte("a\nc\n"), "new": []byte("n")})
	slices.Sort(r.errs)
	want := []string{"testdata/d/changed differs", "testdata/d/new is produced but has no golden file", "testdata/d/stale is no longer produced"}
	if len(r.errs) != len(want) {
		t.Fatalf("errors %q, want %d", r.errs, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(r.errs[i], w) {
			t.Errorf("error %q, want it to start with %q", r.errs[i], w)
		}
	}
	if !strings.Contains(r.errs[0], "line 2:\n  want: b\n  got:  c\n") {
		t.Errorf("the diff of a changed file does not show the line: %q", r.errs[0])
	}
}
