//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// tools are the binaries the suite drives; make test-e2e builds them into bin/
// and passes their paths.
type tools struct {
	helm, kwokctl, kwok string
	// kubeAssets holds kube-apiserver, kube-controller-manager,
	// kube-scheduler, etcd and kubectl of one Kubernetes release.
	kubeAssets string
	kubeVer    string
}

func toolsFromEnv() tools {
	t := tools{
		helm:       os.Getenv("HELM"),
		kwokctl:    os.Getenv("KWOKCTL"),
		kwok:       os.Getenv("KWOK"),
		kubeAssets: os.Getenv("KUBE_ASSETS"),
	}
	Expect(t.helm).NotTo(BeEmpty(), "HELM is not set: run make test-e2e")
	Expect(t.kwokctl).NotTo(BeEmpty(), "KWOKCTL is not set: run make test-e2e")
	Expect(t.kwok).NotTo(BeEmpty(), "KWOK is not set: run make test-e2e")
	Expect(t.kubeAssets).NotTo(BeEmpty(), "KUBE_ASSETS is not set: run make test-e2e")
	for _, bin := range []string{t.helm, t.kwokctl, t.kwok, t.kubectl(), t.kubeBinary("kube-apiserver"),
		t.kubeBinary("kube-controller-manager"), t.kubeBinary("kube-scheduler"), t.kubeBinary("etcd")} {
		Expect(bin).To(BeAnExistingFile())
	}
	// bin/k8s/<version>/ names the release the binaries were built from.
	t.kubeVer = "v" + filepath.Base(t.kubeAssets)
	return t
}

func (t tools) kubeBinary(name string) string { return filepath.Join(t.kubeAssets, name) }
func (t tools) kubectl() string               { return t.kubeBinary("kubectl") }

// kwokCluster is a kwokctl cluster of the binary runtime: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok-controller as local
// processes on 127.0.0.1, all from local binaries (kwokctl downloads nothing).
type kwokCluster struct {
	tools
	name       string
	workdir    string // KWOK_WORKDIR: kwokctl's state, logs and cache
	kubeconfig string
}

// env is the environment of every kwokctl call: its own working directory
// (nothing in ~/.kwok) and the Kubernetes release of the binaries, whose flags
// kwokctl writes.
func (c *kwokCluster) env() []string {
	return append(os.Environ(), "KWOK_WORKDIR="+c.workdir, "KWOK_KUBE_VERSION="+c.kubeVer)
}

func (c *kwokCluster) kwokctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.tools.kwokctl, append(args, "--name", c.name)...)
	cmd.Env = c.env()
	dieWithSuite(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// createKwokCluster starts a cluster named name with its state under dir and
// registers its deletion, which runs even when the suite fails.
func createKwokCluster(ctx context.Context, t tools, name, dir string) *kwokCluster {
	c := &kwokCluster{tools: t, name: name, workdir: filepath.Join(dir, "kwok"), kubeconfig: filepath.Join(dir, "kubeconfig")}
	Expect(os.MkdirAll(c.workdir, 0o755)).To(Succeed())
	// kubectl has no flag in kwokctl v0.8.0 and the bind address none at all:
	// both go through a KwokctlConfiguration. Binding to 127.0.0.1 keeps every
	// component off the network.
	config := filepath.Join(dir, "kwokctl.yaml")
	Expect(os.WriteFile(config, []byte(fmt.Sprintf(`apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  bindAddress: 127.0.0.1
  kubectlBinary: %s
`, t.kubectl())), 0o644)).To(Succeed())

	DeferCleanup(func(ctx SpecContext) {
		out, err := c.kwokctl(ctx, "delete", "cluster")
		Expect(err).NotTo(HaveOccurred(), "kwokctl delete cluster: %s", out)
	}, NodeTimeout(2*time.Minute))

	out, err := c.kwokctl(ctx, "--config", config, "create", "cluster",
		"--runtime", "binary",
		"--kubeconfig", c.kubeconfig,
		"--kube-apiserver-binary", t.kubeBinary("kube-apiserver"),
		"--kube-controller-manager-binary", t.kubeBinary("kube-controller-manager"),
		"--kube-scheduler-binary", t.kubeBinary("kube-scheduler"),
		"--etcd-binary", t.kubeBinary("etcd"),
		"--kwok-controller-binary", t.kwok,
		"--kube-authorization", "--kube-admission",
		"--wait", "2m",
	)
	Expect(err).NotTo(HaveOccurred(), "kwokctl create cluster: %s", out)
	GinkgoWriter.Printf("kwokctl create cluster:\n%s", out)
	return c
}

// logs returns a component's log (kube-apiserver, kube-controller-manager, ...).
func (c *kwokCluster) logs(ctx context.Context, component string) string {
	out, err := c.kwokctl(ctx, "logs", component)
	if err != nil {
		return fmt.Sprintf("kwokctl logs %s: %v\n%s", component, err, out)
	}
	return out
}

// run runs a command with the cluster's kubeconfig and returns its stdout; a
// failure includes stderr.
func (c *kwokCluster) run(ctx context.Context, bin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kubeconfig)
	dieWithSuite(cmd)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func (c *kwokCluster) kubectl(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, c.tools.kubectl(), args...)
}

func (c *kwokCluster) helm(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, c.tools.helm, append(args, "--kubeconfig", c.kubeconfig)...)
}
