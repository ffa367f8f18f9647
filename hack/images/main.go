package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const natsModule = "github.com/nats-io/nats-server/v2"

// created stamps the config, the history and the layer's files: a fixed time
// makes the same binary give the same image digest on every run.
var created = time.Unix(0, 0).UTC()

// spec is one image: a single static binary on an empty base.
type spec struct {
	// short names the archive, <short>.tar.
	short string
	// ref is the full reference; container runtimes would otherwise normalise a
	// short name to docker.io and miss the imported image.
	ref string
	// pkg is the go build target, relative to the module root or a module path.
	pkg string
	// entry is where the binary lives in the image: the path of the
	// Dockerfile's image, so that manifests run either build unchanged.
	entry string
	// also are more binaries of the image, beside entry.
	also []binary
	// ports mirror the Dockerfile's EXPOSE.
	ports []string
	// user runs the entrypoint; empty means the distroless nonroot user.
	user string
}

// binary is a go build target and where its binary lives in an image.
type binary struct{ pkg, path string }

// specs lists the images; refs maps a short name to its full reference.
func specs(refs map[string]string) []spec {
	return []spec{
		{short: "manager", ref: refs["manager"], pkg: ".", entry: "/manager"},
		// The sidecar containers run /patchbay-sidecar, the sidecar role alone
		// (internal/render.SidecarCommand); the other roles the entrypoint.
		{short: "patchbay-runtime", ref: refs["patchbay-runtime"], pkg: "./images/runtime", entry: "/patchbay-runtime",
			also:  []binary{{pkg: "./images/runtime/sidecar", path: "/patchbay-sidecar"}},
			ports: []string{"15080/tcp", "15090/tcp", "8080/tcp"}},
		{short: "demo-step", ref: refs["demo-step"], pkg: "./images/demo-step", entry: "/demo-step",
			ports: []string{"8080/tcp"}},
		// The Broker's pods run the bare command nats-server, found on PATH
		// as in the nats:alpine image they default to.
		{short: "nats-server", ref: refs["nats-server"], pkg: natsModule, entry: "/usr/local/bin/nats-server",
			ports: []string{"4222/tcp", "6222/tcp", "8222/tcp"}},
		{short: "pause", ref: refs["pause"], pkg: "./images/pause", entry: "/pause"},
		// The local cluster's volume helper creates directories on the node as
		// root; its namespace is exempt from the restricted standard.
		{short: "local-path-helper", ref: refs["local-path-helper"], pkg: "./images/local-path-helper",
			entry: "/local-path-helper", user: "0:0"},
		// The cluster tier's client inside the cluster.
		{short: "cluster-probe", ref: refs["cluster-probe"], pkg: "./test/cluster/probe", entry: "/cluster-probe",
			ports: []string{"8080/tcp"}},
	}
}

func main() {
	out := flag.String("out", "bin/images", "Directory of the archives, one <short-name>.tar per image.")
	img := flag.String("img", "ghcr.io/patchbay-dev/patchbay-manager:0.1.0", "Manager image.")
	runtimeImg := flag.String("runtime-img", "ghcr.io/patchbay-dev/patchbay-runtime:0.1.0", "patchbay-runtime image.")
	demoStepImg := flag.String("demo-step-img", "ghcr.io/patchbay-dev/demo-step:0.1.0", "demo-step image.")
	natsImg := flag.String("nats-img", "", "NATS server image (default ghcr.io/patchbay-dev/nats-server:<the version go.mod requires>).")
	pauseImg := flag.String("pause-img", "ghcr.io/patchbay-dev/pause:0.1.0", "Pod sandbox (pause) image.")
	helperImg := flag.String("local-path-helper-img", "ghcr.io/patchbay-dev/local-path-helper:0.1.0", "The local cluster's volume helper image.")
	probeImg := flag.String("probe-img", "ghcr.io/patchbay-dev/cluster-probe:0.1.0", "The cluster tier's probe image.")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: %s [flags] [short-name...]\n\n"+
			"Builds OCI image archives (docker save format) without a Docker engine;\n"+
			"with short names (manager, patchbay-runtime, demo-step, nats-server, pause,\n"+
			"local-path-helper, cluster-probe) only those.\n\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	refs := map[string]string{
		"manager": *img, "patchbay-runtime": *runtimeImg, "demo-step": *demoStepImg, "nats-server": *natsImg,
		"pause": *pauseImg, "local-path-helper": *helperImg, "cluster-probe": *probeImg,
	}
	err := run(ctx, *out, flag.Args(), refs)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out string, only []string, refs map[string]string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	if refs["nats-server"] == "" {
		v, err := goOutput(ctx, root, "list", "-m", "-f", "{{.Version}}", natsModule)
		if err != nil {
			return err
		}
		refs["nats-server"] = "ghcr.io/patchbay-dev/nats-server:" + v
	}
	all := specs(refs)
	selected, err := selectSpecs(all, only)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "patchbay-images-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// One after the other: each go build already uses every core.
	for _, s := range selected {
		file := filepath.Join(out, s.short+".tar")
		if err := build(ctx, root, work, s, file); err != nil {
			return fmt.Errorf("%s: %w", s.short, err)
		}
		st, err := os.Stat(file)
		if err != nil {
			return err
		}
		fmt.Printf("%s  %s  %.1f MiB\n", s.ref, file, float64(st.Size())/(1<<20))
	}
	return nil
}

func selectSpecs(all []spec, only []string) ([]spec, error) {
	if len(only) == 0 {
		return all, nil
	}
	var sel []spec
	for _, short := range only {
		found := false
		for _, s := range all {
			if s.short == short {
				sel = append(sel, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("no image %q", short)
		}
	}
	return sel, nil
}

// build compiles s's binary in work and writes its image to file.
func build(ctx context.Context, root, work string, s spec, file string) error {
	files := map[string]string{s.entry: filepath.Join(work, s.short)}
	for i, b := range s.also {
		files[b.path] = filepath.Join(work, fmt.Sprintf("%s-%d", s.short, i))
	}
	for _, b := range append([]binary{{pkg: s.pkg, path: s.entry}}, s.also...) {
		if err := goBuild(ctx, root, b.pkg, files[b.path]); err != nil {
			return err
		}
	}
	img, err := imageOf(s, files)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(s.ref)
	if err != nil {
		return err
	}
	// Write next to the archive and rename, so that an interrupted run leaves
	// no truncated archive for a cluster to import.
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, file)
}

// goBuild builds pkg as the Dockerfiles do: static, without paths of this
// machine or symbols.
func goBuild(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// imageOf puts the binaries (files maps a path in the image to a built
// binary: s.entry and s.also) as the one layer of an empty image, run as the
// distroless nonroot user like the Dockerfiles' images.
func imageOf(s spec, files map[string]string) (v1.Image, error) {
	data := map[string][]byte{}
	for path, bin := range files {
		b, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		data[path] = b
	}
	layerTar, err := layerTar(data)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "go build -trimpath -ldflags='-s -w' " + s.pkgs() + " (hack/images)",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Config.User = "65532:65532"
	if s.user != "" {
		cf.Config.User = s.user
	}
	cf.Config.Entrypoint = []string{s.entry}
	cf.Config.WorkingDir = "/"
	// Container runtimes resolve a bare command such as nats-server with the
	// image's PATH only; distroless sets the same one.
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if len(s.ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// pkgs are the build targets of the image's binaries.
func (s spec) pkgs() string {
	p := []string{s.pkg}
	for _, b := range s.also {
		p = append(p, b.pkg)
	}
	return strings.Join(p, " ")
}

// layerTar is a tar of the binaries (by their path in the image) and of the
// directories above them, owned by root and executable by the image's
// non-root user, in the order of their paths.
func layerTar(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := slices.Sorted(maps.Keys(files))
	written := map[string]bool{}
	for _, entry := range paths {
		rel := strings.TrimPrefix(path.Clean(entry), "/")
		var dirs []string
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			dirs = append([]string{d}, dirs...)
		}
		for _, d := range dirs {
			if written[d] {
				continue
			}
			written[d] = true
			if err := tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: created,
				Uname: "root", Gname: "root",
			}); err != nil {
				return nil, err
			}
		}
		data := files[entry]
		if err := tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: rel, Mode: 0o755, Size: int64(len(data)), ModTime: created,
			Uname: "root", Gname: "root",
		}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// moduleRoot lets the command run from any directory of the module, and its
// test from hack/images.
func moduleRoot(ctx context.Context) (string, error) {
	gomod, err := goOutput(ctx, "", "env", "GOMOD")
	if err != nil {
		return "", err
	}
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the patchbay module")
	}
	return filepath.Dir(gomod), nil
}

func goOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}
