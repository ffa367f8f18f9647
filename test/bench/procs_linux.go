package main

import "syscall"

// childAttrs make a started server die with the benchmark, however it ends.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
