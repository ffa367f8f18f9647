// Package cli is the command line of patchbay-runtime: one subcommand per role.
package cli
