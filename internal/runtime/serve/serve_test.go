package serve

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestServerEndsASlowBody(t *testing.T) {
	g := NewWithT(t)
	l, err := Listen("127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	readErr := make(chan error, 1)
	h := http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, slog.New(slog.DiscardHandler), &Health{}, Options{ReadTimeout: 200 * time.Millisecond, DrainTimeout: time.Second},
			Server{Name: "test", Listener: l, Handler: h})
	}()
	defer func() {
		cancel()
		g.Eventually(done).WithTimeout(5 * time.Second).Should(Receive())
	}()

	// A slow loris: the headers promise 100 bytes, 10 arrive, then nothing.
	c, err := net.Dial("tcp", l.Addr().String())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_, err = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
	g.Expect(err).NotTo(HaveOccurred())

	var got error
	g.Eventually(readErr).WithTimeout(5*time.Second).Should(Receive(&got), "the handler still waits for the body")
	g.Expect(got).To(HaveOccurred())
}

// A client keeps a connection for at most MaxConnAge: the first answer on an
// older connection closes it, so that the client dials again through the
// Service instead of staying on a pod a switch retired. A younger connection
// stays open.
func TestAnAgedConnectionIsClosedByAnAnswer(t *testing.T) {
	for name, tc := range map[string]struct {
		maxAge time.Duration
		closed bool
	}{
		"younger than the age": {time.Hour, false},
		"older than the age":   {time.Nanosecond, true},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			l, err := Listen("127.0.0.1:0")
			g.Expect(err).NotTo(HaveOccurred())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, slog.New(slog.DiscardHandler), &Health{}, Options{MaxConnAge: tc.maxAge, DrainTimeout: time.Second},
					Server{Name: "test", Listener: l, Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})})
			}()
			defer func() {
				cancel()
				g.Eventually(done).WithTimeout(5 * time.Second).Should(Receive())
			}()
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			resp, err := client.Get("http://" + l.Addr().String() + "/")
			g.Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			g.Expect(resp.Close).To(Equal(tc.closed), "the answer closes the connection")
		})
	}
}
