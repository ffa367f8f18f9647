// Command bench measures patchbay's performance targets (README, Benchmarks), each against a baseline taken in the same run (make bench).
package main
