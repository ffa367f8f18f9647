package freeport

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// A port is free, listenable, and below the kernel's ephemeral range.
func TestPortIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	g := NewWithT(t)
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		low, err = strconv.Atoi(strings.Fields(string(b))[0])
		g.Expect(err).NotTo(HaveOccurred())
	}
	for range 20 {
		addr, err := Addr()
		g.Expect(err).NotTo(HaveOccurred())
		_, p, err := net.SplitHostPort(addr)
		g.Expect(err).NotTo(HaveOccurred())
		port, err := strconv.Atoi(p)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(port).To(And(BeNumerically(">=", floor), BeNumerically("<", low)))
		l, err := net.Listen("tcp", addr)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(l.Close()).To(Succeed())
	}
}
