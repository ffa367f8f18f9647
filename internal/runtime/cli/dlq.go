package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/patchbay-dev/patchbay/internal/plan"
	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
)

const dlqUsage = `Usage:
  patchbay-runtime dlq list   --plan FILE --nats-url URL [--nats-credentials DIR] [--after ID] [--limit N]
  patchbay-runtime dlq show   --plan FILE --nats-url URL [--nats-credentials DIR] ID
  patchbay-runtime dlq replay --plan FILE --nats-url URL [--nats-credentials DIR] ID

Lists, shows (with the payload) and replays the dead letters of an async
workflow, as the gateway's /deadletters does. Output is JSON.
`

// runDLQ is patchbay-runtime dlq list|show|replay.
func runDLQ(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "show" && args[0] != "replay") {
		fmt.Fprint(stderr, dlqUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	cmd := args[0]
	fs := NewFlagSet("dlq "+cmd, stderr)
	var planFile string
	var n natsFlags
	var after uint64
	var limit int
	var timeout time.Duration
	fs.StringVar(&planFile, "plan", "/etc/patchbay/plan/plan.json", "the Plan JSON file (the <workflow>-plan ConfigMap as rendered)")
	fs.StringVar(&n.url, "nats-url", "", "the Broker's client URL, such as nats://default-nats.shop.svc:4222")
	fs.StringVar(&n.credentials, "nats-credentials", "", "directory with the file nats.creds, the workflow's NATS user (its credentials Secret), or the files user and password")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the broker")
	if cmd == "list" {
		fs.Uint64Var(&after, "after", 0, "list the dead letters after this id (the next of a previous page)")
		fs.IntVar(&limit, "limit", 100, "list at most this many dead letters")
	}
	// The id may come before or after the flags.
	rest := args[1:]
	var id string
	if cmd != "list" && len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	switch {
	case cmd == "list" && fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	case cmd != "list" && id == "" && fs.NArg() == 1:
		id = fs.Arg(0)
	case cmd != "list" && (id == "" || fs.NArg() > 0):
		return fmt.Errorf("dlq %s takes one dead letter id", cmd)
	}
	if cmd == "list" && (limit < 1 || limit > 1000) {
		return fmt.Errorf("--limit=%d: want 1 to 1000", limit)
	}
	if n.url == "" {
		return errors.New("--nats-url is required: the Broker's client URL")
	}
	p, err := plan.Load(planFile)
	if err != nil {
		return err
	}
	if p.Stream == nil || p.Stream.DeadLetterStream == "" {
		return fmt.Errorf("plan of workflow %s (style %s) has no dead letters", p.Workflow, p.Style)
	}
	conn, err := bus.Connect(bus.Options{URL: n.url, Credentials: n.credentials, InboxPrefix: bus.InboxPrefix(p),
		Name: "patchbay " + p.Namespace + "/" + p.Workflow + " dlq"}, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dlq := &bus.DeadLetters{Plan: p, Conn: conn}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	switch cmd {
	case "list":
		list, err := dlq.List(ctx, after, limit)
		if err != nil {
			return err
		}
		return enc.Encode(list)
	case "show":
		dl, err := dlq.Get(ctx, id)
		if err != nil {
			return err
		}
		return enc.Encode(dl)
	}
	if dlq.Runs, err = bus.OpenRuns(ctx, conn.JS, p); err != nil {
		return err
	}
	dl, run, err := dlq.Replay(ctx, id)
	if err != nil {
		return err
	}
	out := map[string]any{"deadLetter": id, "subject": dl.Subject}
	if run != nil {
		out["runId"], out["replays"] = run.ID, run.Replays
	}
	return enc.Encode(out)
}
