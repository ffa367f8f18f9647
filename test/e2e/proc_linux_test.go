//go:build e2e && linux

package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithSuite makes the kernel kill cmd when the suite's process dies, even
// of a go test timeout, which runs no cleanup.
func dieWithSuite(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
