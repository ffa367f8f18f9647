package hop

import (
	"net"
	"net/http"
	"time"
)

// NewTransport is the one http.Transport of a process: keep-alive connections
// to every sidecar and app it calls, enough idle ones that a burst does not
// redial, and no compression or proxy on a pod-local hop.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   512,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 0, // the edge's per-attempt timeout bounds an attempt
	}
}
