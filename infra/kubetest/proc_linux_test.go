package kubetest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal kills a component when the test process dies, so that a
// crashed or killed test leaves no control plane behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
