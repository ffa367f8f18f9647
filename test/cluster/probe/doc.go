// Command cluster-probe is the cluster tier's client inside the cluster: an
// HTTP server that makes requests, dials and lookups on the suite's behalf.
package main
