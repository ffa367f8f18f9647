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
