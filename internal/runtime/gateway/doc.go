// Package gateway is the HTTP door of the async styles: it starts runs on the bus, holds sync callers until the outcome, serves run records and the CQRS read model, and proxies dual-support reads to steps.
package gateway
