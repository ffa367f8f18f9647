// Package cli is the command line of patchbay-runtime: one subcommand per role,
// and graph, which draws a Workflow's topology.
package cli
