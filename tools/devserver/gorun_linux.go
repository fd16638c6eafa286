package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// stopWithGoRun makes `go run ./tools/devserver` stop cleanly when the go command is
// stopped. The go command ignores SIGINT (the terminal sends it to both) but not SIGTERM,
// and it forwards nothing: `kill <go's pid>` would leave this process running on its ports.
// When the parent process is the go command, ask the kernel for SIGTERM when it exits,
// which the signal handler turns into the usual drain. Any other parent (a shell, an init
// system, nohup) is left alone.
func stopWithGoRun() {
	ppid := os.Getppid()
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", ppid))
	if err != nil || strings.TrimSpace(string(comm)) != "go" {
		return
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return
	}
	if os.Getppid() != ppid { // the go command exited before the request took effect
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}
