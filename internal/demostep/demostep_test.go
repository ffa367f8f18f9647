package demostep

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func serveStep(t *testing.T, args ...string) (*Step, *httptest.Server) {
	t.Helper()
	cfg, err := Parse(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := New(cfg)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func call(g Gomega, url, contentType, body string) (int, http.Header, string) {
	resp, err := http.Post(url, contentType, strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestParseMatchesTheSamples(t *testing.T) {
	g := NewWithT(t)
	cfg, err := Parse([]string{"--mode=transform", "--set=valid=true", "--set=cart=loaded", `--set=n={"a":1}`}, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.Mode).To(Equal(ModeTransform))
	g.Expect(cfg.Set).To(HaveLen(3))
	g.Expect(string(cfg.Set[0].Value)).To(Equal("true"))
	g.Expect(string(cfg.Set[1].Value)).To(Equal(`"loaded"`))
	g.Expect(string(cfg.Set[2].Value)).To(Equal(`{"a":1}`))

	for _, bad := range [][]string{{"--mode=shout"}, {"--set=novalue"}, {"--failure-rate=2"}, {"extra"}} {
		_, err := Parse(bad, io.Discard)
		g.Expect(err).To(HaveOccurred(), "%v", bad)
	}
}

func TestTransformAndEcho(t *testing.T) {
	g := NewWithT(t)
	_, tr := serveStep(t, "--mode=transform", "--set=valid=true")
	code, _, body := call(g, tr.URL, "application/json", `{"id":1,"valid":false}`)
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(MatchJSON(`{"id":1,"valid":true}`))
	code, _, _ = call(g, tr.URL, "application/json", `[1]`)
	g.Expect(code).To(Equal(400))
	code, _, _ = call(g, tr.URL, "application/json", `{"id":`)
	g.Expect(code).To(Equal(400))

	_, echo := serveStep(t, "--mode=echo", "--status=201")
	code, h, body := call(g, echo.URL+"/any/path", "text/plain", "hello")
	g.Expect(code).To(Equal(201))
	g.Expect(h.Get("Content-Type")).To(Equal("text/plain"))
	g.Expect(body).To(Equal("hello"))
}

func TestFailFirst(t *testing.T) {
	g := NewWithT(t)
	s, srv := serveStep(t, "--fail-first=2", "--fail-status=503", "--retry-after=2s")
	for range 2 {
		code, h, _ := call(g, srv.URL, "application/json", `{}`)
		g.Expect(code).To(Equal(503))
		g.Expect(h.Get("Retry-After")).To(Equal("2"))
	}
	code, _, _ := call(g, srv.URL, "application/json", `{}`)
	g.Expect(code).To(Equal(200))
	g.Expect(s.Stats()).To(And(HaveField("Calls", BeEquivalentTo(3)), HaveField("Failures", BeEquivalentTo(2))))
}

func TestHoldReportsInFlightUntilReleased(t *testing.T) {
	g := NewWithT(t)
	s, srv := serveStep(t, "--hold")
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{}`))
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		})
	}
	g.Eventually(func() int64 { return s.Stats().InFlight }).WithTimeout(10 * time.Second).WithPolling(5 * time.Millisecond).Should(BeEquivalentTo(3))
	code, _, _ := call(g, srv.URL+"/_demo/release", "", "")
	g.Expect(code).To(Equal(http.StatusNoContent))
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(s.Stats()).To(And(HaveField("InFlight", BeZero()), HaveField("MaxInFlight", BeEquivalentTo(3))))
}

func TestBarrierNeedsEveryParty(t *testing.T) {
	g := NewWithT(t)
	_, host := serveStep(t)
	url := host.URL + "/_demo/barrier?name=b&parties=2"
	a, srvA := serveStep(t, "--barrier="+url)
	b, srvB := serveStep(t, "--barrier="+url)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, u := range []string{srvA.URL, srvB.URL} {
		wg.Go(func() {
			resp, err := http.Post(u, "application/json", strings.NewReader(`{}`))
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	g.Expect(codes).To(Equal([]int{200, 200}))
	g.Expect(a.Stats().BarrierMet + b.Stats().BarrierMet).To(BeEquivalentTo(2))

	_, alone := serveStep(t, "--barrier="+url, "--barrier-timeout=50ms")
	code, _, body := call(g, alone.URL, "application/json", `{}`)
	g.Expect(code).To(Equal(500))
	g.Expect(body).To(ContainSubstring("did not arrive"))
}

func TestServerBoundsHowLongABodyMayTake(t *testing.T) {
	g := NewWithT(t)
	cfg, err := Parse(nil, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	srv := NewServer(":0", cfg)
	g.Expect(srv.ReadHeaderTimeout).To(BeNumerically(">", 0))
	g.Expect(srv.ReadTimeout).To(BeNumerically(">", 0), "a slow body would hold a handler for ever")
}

func TestDeliveriesCountsCallsPerCeID(t *testing.T) {
	g := NewWithT(t)
	_, srv := serveStep(t, "--mode=echo")
	for _, id := range []string{"run-1.a", "run-1.a", "run-2.a", ""} {
		req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
		g.Expect(err).NotTo(HaveOccurred())
		if id != "" {
			req.Header.Set("Ce-Id", id)
		}
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
	}
	code, body := get(g, srv.URL+"/_demo/deliveries")
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(MatchJSON(`{"run-1.a":2,"run-2.a":1}`), "a call without Ce-Id is not counted")
	code, _, _ = call(g, srv.URL+"/_demo/reset", "", "")
	g.Expect(code).To(Equal(http.StatusNoContent))
	_, body = get(g, srv.URL+"/_demo/deliveries")
	g.Expect(body).To(MatchJSON(`{}`))
}

func get(g Gomega, url string) (int, string) {
	resp, err := http.Get(url)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEmitNamesTheEventTypeAndEmitWhenOverridesIt(t *testing.T) {
	g := NewWithT(t)
	s, srv := serveStep(t, "--mode=transform", "--set=charged=true", "--emit=payment.captured", "--emit-when=card=declined:payment.failed")
	code, h, body := call(g, srv.URL, "application/json", `{"id":1,"card":"ok"}`)
	g.Expect(code).To(Equal(200))
	g.Expect(h.Get("Ce-Type")).To(Equal("payment.captured"))
	g.Expect(body).To(MatchJSON(`{"id":1,"card":"ok","charged":true}`))

	code, h, body = call(g, srv.URL, "application/json", `{"id":2,"card":"declined"}`)
	g.Expect(code).To(Equal(200))
	g.Expect(h.Get("Ce-Type")).To(Equal("payment.failed"))
	g.Expect(body).To(MatchJSON(`{"id":2,"card":"declined"}`), "a matched rule answers the input unchanged")

	last := s.Stats().Last
	g.Expect(last).NotTo(BeNil())
	g.Expect(last.End).NotTo(BeTemporally("<", last.Start))

	_, plain := serveStep(t, "--mode=echo")
	_, h, _ = call(g, plain.URL, "application/json", `{}`)
	g.Expect(h.Values("Ce-Type")).To(BeEmpty())

	for _, bad := range []string{"--emit-when=card=declined", "--emit-when=:x", "--emit-when=card=declined:"} {
		_, err := Parse([]string{bad}, io.Discard)
		g.Expect(err).To(HaveOccurred(), bad)
	}
}
