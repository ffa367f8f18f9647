// Command bench measures the DESIGN §6 performance targets, each against a baseline taken in the same run (make bench).
package main
