package bus

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/gomega"

	"github.com/patchbay-dev/patchbay/internal/plan"
)

// A consumer led by one replica of an R3 stream delivers a message as soon
// as that replica stores it; the stream's leader, which answers reads by
// sequence, may store it a little later. Payload waits for a message beyond
// the leader's last one, as it would be then, instead of calling it gone. A
// single server shows the same state: the ref is read before its message is
// published.
func TestPayloadWaitsForAMessageTheStreamsLeaderHasNotStoredYet(t *testing.T) {
	g := NewWithT(t)
	c, p := givenPayloadStream(t)
	ctx := context.Background()

	type read struct {
		data []byte
		ct   string
		err  error
	}
	got := make(chan read, 1)
	go func() {
		data, ct, err := c.Payload(ctx, p, &Ref{Seq: 1})
		got <- read{data, ct, err}
	}()
	g.Consistently(got).WithTimeout(100 * time.Millisecond).ShouldNot(Receive())
	msg := NewMsg("pb.shop.wf.out", http.Header{"Content-Type": {"application/json"}}, []byte(`{"ok":true}`))
	_, err := c.JS.PublishMsg(ctx, msg)
	g.Expect(err).NotTo(HaveOccurred())
	var r read
	g.Eventually(got).WithTimeout(payloadCatchUp).Should(Receive(&r))
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.data).To(MatchJSON(`{"ok":true}`))
	g.Expect(r.ct).To(Equal("application/json"))
}

// A message within the stream's range that is not there any more is gone
// at once, and the error says what the stream holds.
func TestPayloadOfADeletedMessageIsGoneAndSaysWhatTheStreamHolds(t *testing.T) {
	g := NewWithT(t)
	c, p := givenPayloadStream(t)
	ctx := context.Background()
	for range 3 {
		_, err := c.JS.Publish(ctx, "pb.shop.wf.out", []byte(`{}`))
		g.Expect(err).NotTo(HaveOccurred())
	}
	s, err := c.JS.Stream(ctx, p.Stream.Name)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(s.DeleteMsg(ctx, 1)).To(Succeed())
	g.Expect(s.DeleteMsg(ctx, 2)).To(Succeed())

	_, _, err = c.Payload(ctx, p, &Ref{Seq: 2})
	g.Expect(err).To(MatchError(ErrPayloadGone))
	g.Expect(err).To(MatchError(ContainSubstring("message 2 of stream PB_shop_wf, which holds messages 3 to 3 since ")))
	_, _, err = c.Payload(ctx, p, nil)
	g.Expect(err).To(MatchError(ErrPayloadGone))
}

func givenPayloadStream(t *testing.T) (*Conn, *plan.Plan) {
	t.Helper()
	_, url := givenJetStream(t)
	c, err := Connect(Options{URL: url, Name: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	NewWithT(t).Eventually(c.Ready).WithTimeout(10 * time.Second).Should(Succeed())
	p := &plan.Plan{Namespace: "shop", Workflow: "wf",
		Stream: &plan.Stream{Name: "PB_shop_wf", Subjects: []string{"pb.shop.wf.>"}, RunsBucket: "pb_shop_wf_runs"}}
	ctx := context.Background()
	if _, err := c.JS.CreateStream(ctx, jetstream.StreamConfig{Name: p.Stream.Name, Subjects: p.Stream.Subjects}); err != nil {
		t.Fatal(err)
	}
	return c, p
}
