package dev_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/runtime/bus"
	"github.com/patchbay-dev/patchbay/internal/runtime/cli"
	"github.com/patchbay-dev/patchbay/internal/runtime/contract"
)

type deadLetterPage struct {
	DeadLetters []bus.DeadLetter `json:"deadLetters"`
	Next        string           `json:"next"`
}

// Dead letters live in a stream of their own, kept 7 days by default (the
// workflow's stream keeps 24h); the gateway lists, shows and replays them,
// and a replayed run finishes with its step's answer, keeping the failure
// it had in its history.
func TestDeadLettersAreKeptListedAndReplayed(t *testing.T) {
	for _, tc := range []struct{ style, yaml, want string }{
		{"async-orchestrated", `  style: async-orchestrated
  steps:
  - {name: first, image: demo, args: ["--mode=transform", "--set=first=true"]}
  - {name: picky, image: demo, args: ["--mode=transform", "--set=picky=true", "--fail-first=1", "--fail-status=400"], dependsOn: [first]}
`, `{"id":1,"first":true,"picky":true}`},
		{"choreography", `  style: choreography
  deadLetters: {retention: 48h}
  entry: {sync: true, timeout: 10s, event: req, completesOn: [done]}
  steps:
  - {name: first, image: demo, args: ["--mode=transform", "--set=first=true"], subscribes: [req], emits: [checked]}
  - {name: picky, image: demo, args: ["--mode=transform", "--set=picky=true", "--fail-first=1", "--fail-status=400"], subscribes: [checked], emits: [done]}
`, `{"id":1,"first":true,"picky":true}`},
	} {
		t.Run(tc.style, func(t *testing.T) {
			g := NewWithT(t)
			env := givenWorkflow(t, "apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata: {name: test}\nspec:\n  resilience: "+fastAsync+"\n"+tc.yaml)
			base := strings.TrimSuffix(env.EntryURL, "/")

			a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
			g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s", a.Body)
			runID := a.Header.Get(contract.HeaderRunID)

			var page deadLetterPage
			eventually(g, func(g Gomega) {
				getJSON(g, base+"/deadletters", &page)
				g.Expect(page.DeadLetters).To(HaveLen(1))
			}).Should(Succeed())
			dl := page.DeadLetters[0]
			g.Expect(dl).To(And(HaveField("Step", "picky"), HaveField("RunID", runID), HaveField("Code", 400), HaveField("Status", 400)))
			g.Expect(dl.Payload).To(BeEmpty(), "a listing leaves payloads out")

			var one bus.DeadLetter
			getJSON(g, base+"/deadletters/"+dl.ID, &one)
			g.Expect(one.Payload).To(MatchJSON(`{"id":1,"first":true}`))
			g.Expect(one.Attempts).To(Equal(1))

			// Its own stream, with its own retention.
			conn := connect(t, env)
			s, err := conn.JS.Stream(context.Background(), env.Plan.Stream.DeadLetterStream)
			g.Expect(err).NotTo(HaveOccurred())
			want := 7 * 24 * time.Hour
			if tc.style == "choreography" {
				want = 48 * time.Hour
			}
			g.Expect(s.CachedInfo().Config.MaxAge).To(Equal(want))

			r := whenPost(t, base+"/deadletters/"+dl.ID+"/replay", "application/json", nil)
			g.Expect(r.Code).To(Equal(http.StatusAccepted), "%s", r.Body)
			g.Expect(r.Header.Get("Location")).To(Equal("/runs/" + runID))
			eventually(g, func(g Gomega) {
				got := whenGet(t, base+"/runs/"+runID)
				g.Expect(got.Code).To(Equal(http.StatusOK), "%s", got.Body)
				g.Expect(got.Body).To(MatchJSON(tc.want))
			}).Should(Succeed())
			g.Expect(stepStats(g, env, "picky").Calls).To(BeEquivalentTo(2))
			g.Expect(stepStats(g, env, "first").Calls).To(BeEquivalentTo(1), "only the dead letter's step runs again")

			runs, err := bus.OpenRuns(context.Background(), conn.JS, env.Plan)
			g.Expect(err).NotTo(HaveOccurred())
			run, _, err := runs.Get(context.Background(), runID)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(run.Replays).To(Equal(1))
			g.Expect(run.History).To(HaveLen(1))
			g.Expect(run.History[0]).To(And(HaveField("DeadLetter", dl.ID), HaveField("Step", "picky"), HaveField("Status", bus.RunFailed), HaveField("Code", 400)))

			// A finished run's dead letter is not replayed twice.
			again := whenPost(t, base+"/deadletters/"+dl.ID+"/replay", "application/json", nil)
			g.Expect(again.Code).To(Equal(http.StatusConflict), "%s", again.Body)
		})
	}
}

// Ids are checked before they reach the broker, and unknown ones are 404.
func TestDeadLetterIDsAreChecked(t *testing.T) {
	g := NewWithT(t)
	env := givenWorkflow(t, "apiVersion: patchbay.dev/v1alpha1\nkind: Workflow\nmetadata: {name: test}\nspec:\n  style: async-orchestrated\n  steps:\n  - {name: only, image: demo}\n")
	base := strings.TrimSuffix(env.EntryURL, "/")
	for _, id := range []string{"abc", "0", "007", strings.Repeat("9", 4100)} {
		a := whenGet(t, base+"/deadletters/"+id)
		g.Expect(a.Code).To(Equal(http.StatusBadRequest), "%s: %s", id, a.Body)
		var e contract.Error
		g.Expect(json.Unmarshal(a.Body, &e)).To(Succeed())
		g.Expect(e.Message).To(ContainSubstring("dead letter id"))
		g.Expect(whenPost(t, base+"/deadletters/"+id+"/replay", "application/json", nil).Code).To(Equal(http.StatusBadRequest))
	}
	g.Expect(whenGet(t, base+"/deadletters/12345").Code).To(Equal(http.StatusNotFound))
	g.Expect(whenGet(t, base+"/deadletters?after=x").Code).To(Equal(http.StatusBadRequest))
	g.Expect(whenGet(t, base+"/deadletters?limit=0").Code).To(Equal(http.StatusBadRequest))
	// The gateway still reaches its broker.
	g.Expect(whenPostJSON(t, env.EntryURL, `{"id":1}`).Code).To(Equal(http.StatusOK))
}

// patchbay-runtime dlq lists, shows and replays dead letters over the broker,
// with the flags of the other roles.
func TestDLQCommandListsShowsAndReplays(t *testing.T) {
	g := NewWithT(t)
	env := givenSpec(t, `
style: async-orchestrated
resilience: `+fastAsync+`
steps:
- {name: picky, image: demo, args: ["--mode=transform", "--set=picky=true", "--fail-first=1", "--fail-status=422"]}
`)
	planFile := filepath.Join(t.TempDir(), "plan.json")
	b, err := json.Marshal(env.Plan)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(planFile, b, 0o600)).To(Succeed())
	dlq := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := cli.Program{Name: "patchbay-runtime", Roles: []cli.Role{cli.DLQ}}.Main(context.Background(), append(append([]string{"dlq"}, args...), "--plan", planFile, "--nats-url", env.NATSURL), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	a := whenPostJSON(t, env.EntryURL, `{"id":1}`)
	g.Expect(a.Code).To(Equal(http.StatusUnprocessableEntity), "%s", a.Body)
	runID := a.Header.Get(contract.HeaderRunID)

	var list []bus.DeadLetter
	eventually(g, func(g Gomega) {
		code, out, errs := dlq("list")
		g.Expect(code).To(BeZero(), errs)
		g.Expect(json.Unmarshal([]byte(out), &list)).To(Succeed())
		g.Expect(list).To(HaveLen(1))
	}).Should(Succeed())
	g.Expect(list[0]).To(And(HaveField("RunID", runID), HaveField("Step", "picky"), HaveField("Code", 422)))

	code, out, errs := dlq("show", list[0].ID)
	g.Expect(code).To(BeZero(), errs)
	var one bus.DeadLetter
	g.Expect(json.Unmarshal([]byte(out), &one)).To(Succeed())
	g.Expect(one.Payload).To(MatchJSON(`{"id":1}`))

	code, _, errs = dlq("show", "x1")
	g.Expect(code).To(Equal(1))
	g.Expect(errs).To(ContainSubstring("dead letter id must be"))

	code, out, errs = dlq("replay", list[0].ID)
	g.Expect(code).To(BeZero(), errs)
	g.Expect(out).To(ContainSubstring(runID))
	eventually(g, func(g Gomega) {
		got := whenGet(t, strings.TrimSuffix(env.EntryURL, "/")+"/runs/"+runID)
		g.Expect(got.Code).To(Equal(http.StatusOK), "%s", got.Body)
		g.Expect(got.Body).To(MatchJSON(`{"id":1,"picky":true}`))
	}).Should(Succeed())
}
