//go:build unix && !linux

package envoy

import (
	"os"
	"syscall"
)

// sysProcAttr puts Envoy in a process group of its own, so that a Ctrl-C
// meant for kuma-dp does not reach Envoy before the drain.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

var terminateSignal os.Signal = syscall.SIGTERM
