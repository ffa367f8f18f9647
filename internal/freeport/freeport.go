// Package freeport finds loopback ports for the servers that tests,
// benchmarks and the dev mode's step commands start on a port they are given.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// floor is where Port starts looking, above the well-known and most
// registered ports.
const floor = 10000

// Port is a loopback port free at the time of the call. It lies below the
// kernel's ephemeral range (ip_local_port_range): a port from that range,
// once closed, can be taken as the source port of any outgoing connection on
// the machine, and a connection to it while nothing listens can even connect
// to itself (TCP simultaneous open), so that a probe of a server not started
// yet succeeds.
func Port() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > floor+1000 {
				low = n
			}
		}
	}
	for range 1000 {
		port := floor + rand.IntN(low-floor)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port below the ephemeral range")
}

// Addr is 127.0.0.1 with a Port.
func Addr() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}
