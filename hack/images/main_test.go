package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/patchbay-dev/patchbay/internal/render"
)

// TestPauseArchive builds the smallest image the way `make images` does and
// reads the archive back as a cluster would import it.
func TestPauseArchive(t *testing.T) {
	ctx := context.Background()
	root, err := moduleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	for _, c := range specs(map[string]string{"pause": "ghcr.io/patchbay-dev/pause:0.1.0"}) {
		if c.short == "pause" {
			s = c
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "pause.tar")
	if err := build(ctx, root, dir, s, file); err != nil {
		t.Fatal(err)
	}

	tag, err := name.NewTag(s.ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(file, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("User = %q, want 65532:65532", cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("Entrypoint = %q, want [/pause]", cf.Config.Entrypoint)
	}
	if cf.Config.WorkingDir != "/" || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("WorkingDir, OS, Architecture = %q, %q, %q", cf.Config.WorkingDir, cf.OS, cf.Architecture)
	}
	if !cf.Created.Time.Equal(created) {
		t.Errorf("Created = %v, want the fixed %v", cf.Created.Time, created)
	}

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	var names []string
	for _, h := range tarHeaders(t, rc) {
		names = append(names, h.Name)
		if h.Name == "bin/sh" {
			t.Error("The image has a shell")
		}
		if h.Name == "pause" {
			if h.Typeflag != tar.TypeReg || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || h.Size == 0 {
				t.Errorf("pause: type %c mode %o owner %d:%d size %d, want a non-empty regular file 0755 root:root",
					h.Typeflag, h.Mode, h.Uid, h.Gid, h.Size)
			}
		}
	}
	if !slices.Equal(names, []string{"pause"}) {
		t.Errorf("Layer files = %q, want [pause]", names)
	}

	// The same binary must give the same digest, so that a rebuild with
	// unchanged sources loads as the same image.
	again, err := imageOf(s, map[string]string{s.entry: filepath.Join(dir, "pause")})
	if err != nil {
		t.Fatal(err)
	}
	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("Digest differs between two builds of the same binary: %s, %s", d1, d2)
	}
}

// The runtime image holds the binary the rendered sidecar containers run,
// beside its entrypoint.
func TestRuntimeImageHoldsTheSidecarCommand(t *testing.T) {
	var paths []string
	for _, s := range specs(map[string]string{}) {
		if s.short == "patchbay-runtime" {
			paths = append(paths, s.entry)
			for _, b := range s.also {
				paths = append(paths, b.path)
			}
		}
	}
	if !slices.Contains(paths, render.SidecarCommand) || !slices.Contains(paths, "/patchbay-runtime") {
		t.Errorf("patchbay-runtime image binaries %q, want /patchbay-runtime and %s", paths, render.SidecarCommand)
	}
}

// A layer of several binaries has each once, and each directory once, before
// the files in it.
func TestLayerTarOfSeveralBinaries(t *testing.T) {
	b, err := layerTar(map[string][]byte{"/b": []byte("b"), "/usr/local/bin/c": []byte("cc"), "/usr/local/bin/a": []byte("a")})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range tarHeaders(t, bytes.NewReader(b)) {
		names = append(names, h.Name)
	}
	want := []string{"b", "usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/a", "usr/local/bin/c"}
	if !slices.Equal(names, want) {
		t.Errorf("layer %q, want %q", names, want)
	}
}

// tarHeaders are the headers of the tar archive r, in order.
func tarHeaders(t *testing.T, r io.Reader) []*tar.Header {
	t.Helper()
	tr := tar.NewReader(r)
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}
