package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCreateThenDelete(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pvc-1")
	if err := run(dir, "Filesystem", "create"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o777 {
		t.Errorf("mode %v, want 0777", fi.Mode().Perm())
	}
	if err := run(dir, "Filesystem", "delete"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", dir, err)
	}
}

func TestRefusesDangerousInput(t *testing.T) {
	for _, c := range []struct{ path, mode, action string }{
		{"/", "Filesystem", "delete"},
		{"/var", "Filesystem", "delete"},
		{"relative/dir", "Filesystem", "create"},
		{"/tmp/x/y", "Block", "create"},
		{"/tmp/x/y", "Filesystem", "format"},
	} {
		if err := run(c.path, c.mode, c.action); err == nil {
			t.Errorf("run(%q, %q, %q) succeeded, want an error", c.path, c.mode, c.action)
		}
	}
}
