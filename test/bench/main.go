package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"fortio.org/log"
	"github.com/go-logr/logr"

	"github.com/patchbay-dev/patchbay/controllers"
)

const usage = `bench measures patchbay's performance targets that the code can be measured against,
each against a baseline taken in the same run on the same machine, prints a table and exits 1
when a target is missed. Run it from the repository root (make bench).

Usage: bench [flags]
`

func main() {
	if len(os.Args) > 1 && (os.Args[1] == roleEcho || os.Args[1] == roleReverseProxy || os.Args[1] == roleNATS) {
		serve := serveRole
		if os.Args[1] == roleNATS {
			serve = func(_ string, args []string) error { return serveNATS(args) }
		}
		if err := serve(os.Args[1], os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", os.Args[1], err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	sections := fs.String("run", "hop,breaker,nats,async,operator", "sections to run, comma-separated: hop, breaker, nats (raw NATS baselines and the sync wrapper), async (throughput), operator")
	var hop hopConfig
	fs.Float64Var(&hop.qps, "hop-qps", 1000, "hop: open-loop request rate")
	fs.IntVar(&hop.conns, "hop-connections", 16, "hop: connections (fortio threads)")
	fs.DurationVar(&hop.duration, "hop-duration", 15*time.Second, "hop: measured duration per target (direct, reverseproxy, sidecar)")
	fs.IntVar(&hop.rounds, "hop-rounds", 3, "hop: split each target's duration into this many runs, interleaved with the other targets'")
	fs.DurationVar(&hop.warmup, "hop-warmup", 2*time.Second, "hop: unmeasured load before each run")
	fs.IntVar(&hop.payload, "hop-payload", 1024, "hop: request body bytes")
	fs.DurationVar(&hop.resolution, "hop-resolution", 10*time.Microsecond, "hop: fortio histogram resolution")
	fs.BoolVar(&hop.uniform, "hop-uniform", false, "hop: stagger the connections' requests uniformly (fortio -uniform)")
	fs.StringVar(&hop.runtimeBin, "runtime", "", "patchbay-runtime binary: orchestrator, gateway (default: build ./images/runtime)")
	fs.StringVar(&hop.sidecarBin, "sidecar", "", "patchbay-sidecar binary, which the sidecar containers run (default: build ./images/runtime/sidecar as the image does)")
	breakerRounds := fs.Int("breaker-rounds", 3, "breaker: runs of each benchmark; the fastest counts")
	var nc natsConfig
	fs.IntVar(&nc.requests, "nats-requests", 10000, "nats: sequential core request-replies")
	fs.IntVar(&nc.messages, "nats-messages", 100000, "nats: JetStream messages to publish and consume")
	fs.Float64Var(&nc.wrapper.qps, "wrapper-qps", 200, "wrapper: open-loop request rate through the gateway")
	fs.DurationVar(&nc.wrapper.duration, "wrapper-duration", 15*time.Second, "wrapper: measured duration per target (direct, wrapper)")
	var ac asyncConfig
	fs.DurationVar(&ac.duration, "async-duration", 10*time.Second, "async: measured load per workflow")
	fs.DurationVar(&ac.warmup, "async-warmup", 3*time.Second, "async: unmeasured load before each workflow's; longer than the workflows' runTimeout ("+asyncRunTimeout+"), so that the measured load pays for the deadline checks of the runs before it")
	fs.IntVar(&ac.workers, "async-callers", 64, "async: concurrent callers, each starting a run and collecting its result in turn")
	fs.IntVar(&ac.messages, "async-messages", 50000, "async: raw JetStream messages published and consumed at once")
	var op operatorConfig
	fs.IntVar(&op.workflows, "operator-workflows", 1000, "operator: Workflows to converge")
	fs.IntVar(&op.workers, "operator-workers", controllers.DefaultWorkflowConcurrency, "operator: the manager's --workflow-concurrency, and the plain client's concurrency")
	fs.StringVar(&op.sample, "operator-sample", "config/samples/sync-orchestrated.yaml", "operator: the Workflow to copy")
	fs.BoolVar(&op.applyBaseline, "operator-apply-baseline", false, "operator: also time the plain client server-side applying the children, to tell apply's cost apart")
	fs.DurationVar(&op.settle, "operator-settle", 3*time.Second, "operator: idle time that ends the restarted manager's resync")
	jsonFile := fs.String("json", "", "also write the table as JSON to this file, to compare runs over time")
	_ = fs.Parse(os.Args[1:])

	if _, err := os.Stat("go.mod"); err != nil {
		fmt.Fprintln(os.Stderr, "bench: run it from the repository root (make bench)")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	hop.self = self
	if strings.Contains(*sections, "hop") || strings.Contains(*sections, "nats") || strings.Contains(*sections, "async") {
		dir, err := os.MkdirTemp("", "patchbay-bench-runtime-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		for _, b := range []struct {
			bin        *string
			name, pkg  string
			buildFlags []string
		}{
			{&hop.runtimeBin, "patchbay-runtime", "./images/runtime", nil},
			// As the image has it (hack/images), since its memory is measured.
			{&hop.sidecarBin, "patchbay-sidecar", "./images/runtime/sidecar", []string{"-trimpath", "-ldflags=-s -w"}},
		} {
			if *b.bin != "" {
				continue
			}
			*b.bin = filepath.Join(dir, b.name)
			fmt.Println("Building", b.name)
			if err := goBuild(context.Background(), *b.bin, b.pkg, b.buildFlags...); err != nil {
				fmt.Fprintln(os.Stderr, "bench:", err)
				return 1
			}
		}
	}
	// The wrapper loads like the hop, at its own rate and duration.
	wrapperQPS, wrapperDuration := nc.wrapper.qps, nc.wrapper.duration
	nc.wrapper = hop
	nc.wrapper.qps, nc.wrapper.duration = wrapperQPS, wrapperDuration
	nc.runtimeOK = true
	log.SetLogLevelQuiet(log.Warning)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := &report{}
	load := loadAverage()
	start := time.Now()
	var failed []string
	for _, s := range strings.Split(*sections, ",") {
		var err error
		switch strings.TrimSpace(s) {
		case "hop":
			err = runHop(ctx, hop, rep)
		case "breaker":
			runBreaker(rep, *breakerRounds)
		case "nats":
			err = runNATS(ctx, nc, rep)
		case "async":
			ac.self, ac.runtime, ac.sidecar, ac.payload = self, hop.runtimeBin, hop.sidecarBin, hop.payload
			err = runAsync(ctx, ac, rep)
		case "operator":
			err = runOperator(ctx, op, rep)
		default:
			err = fmt.Errorf("unknown section %q", s)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", s, err)
			failed = append(failed, s)
		}
		if ctx.Err() != nil {
			break
		}
	}
	machine := fmt.Sprintf("%d CPUs (GOMAXPROCS %d), load average %s at start, %s at end", runtime.NumCPU(), runtime.GOMAXPROCS(0), load, loadAverage())
	rep.notef("machine: %s; a shared machine is noisy, so compare ratios of one run", machine)
	rep.print(os.Stdout, fmt.Sprintf("patchbay bench, %s, %s", time.Now().Format(time.DateTime), time.Since(start).Round(time.Second)))
	if *jsonFile != "" {
		if err := rep.writeJSON(*jsonFile, start, machine, strings.Split(*sections, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "bench: -json:", err)
			return 1
		}
		fmt.Printf("\nWrote %s\n", *jsonFile)
	}
	switch {
	case len(failed) > 0:
		fmt.Printf("\nSections that could not run: %s\n", strings.Join(failed, ", "))
		return 1
	case rep.failed() > 0:
		fmt.Printf("\n%d targets missed\n", rep.failed())
		return 1
	}
	return 0
}

// loadAverage is the 1, 5 and 15 minute load average, or "n/a".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}

// goBuild builds pkg of this module into out.
func goBuild(ctx context.Context, out, pkg string, flags ...string) error {
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"build", "-o", out}, flags...), pkg)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	_, err := os.Stat(filepath.Clean(out))
	return err
}

func logrDiscard() logr.Logger { return logr.Discard() }
