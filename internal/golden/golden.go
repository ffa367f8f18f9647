// Package golden compares test output with golden files under testdata and,
// when asked, rewrites them: go test ./internal/... -update, or
// UPDATE_GOLDEN=1 go test ./internal/... as make test-update-golden does.
// Review the diff of a rewrite before committing it.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// Updating reports whether the golden files are to be rewritten.
func Updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") != "" }

// hint says how to rewrite the golden files.
const hint = "run make test-update-golden and review the diff"

// Check compares got with the file testdata/<file>, or rewrites the file.
func Check(t testing.TB, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if Updating() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (%s)", err, hint)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (%s):\n%s", path, hint, LineDiff(string(want), string(got)))
	}
}

// CheckDir compares the directory testdata/<dir> with got, a file's content by
// its name, and reports files missing on either side; or rewrites the
// directory, stale files included.
func CheckDir(t testing.TB, dir string, got map[string][]byte) {
	t.Helper()
	path := filepath.Join("testdata", dir)
	if Updating() {
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range got {
			if err := os.WriteFile(filepath.Join(path, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		t.Fatalf("%v (%s)", err, hint)
	}
	for _, e := range entries {
		if _, ok := got[e.Name()]; !ok {
			t.Errorf("%s/%s is no longer produced (%s)", path, e.Name(), hint)
		}
	}
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(path, name))
		if err != nil {
			t.Errorf("%s/%s is produced but has no golden file (%s)", path, name, hint)
			continue
		}
		if !bytes.Equal(got[name], want) {
			t.Errorf("%s/%s differs from the output (%s):\n%s", path, name, hint, LineDiff(string(want), string(got[name])))
		}
	}
}

// LineDiff shows the first ten lines where want and got part.
func LineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}
