package redistest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills redis-server if the test process dies without
// running its cleanups (a test timeout's panic, say).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
