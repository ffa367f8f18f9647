// Package serve runs the HTTP servers of a runtime role: the admin endpoints
// (/metrics, /healthz, /readyz, /debug/breakers) and a graceful drain on shutdown.
package serve
