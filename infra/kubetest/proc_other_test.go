//go:build !linux

package kubetest

import "os/exec"

// setDeathSignal has no portable equivalent off Linux; the test's cleanup
// still stops every component.
func setDeathSignal(*exec.Cmd) {}
