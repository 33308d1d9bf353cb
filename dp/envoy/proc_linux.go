package envoy

import (
	"os"
	"syscall"
)

// sysProcAttr puts Envoy in a process group of its own, so that a Ctrl-C
// meant for kuma-dp does not reach Envoy before the drain, and has the
// kernel send it SIGTERM if kuma-dp dies without stopping it (an orphaned
// Envoy would keep the admin port and the listeners from the next one).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

var terminateSignal os.Signal = syscall.SIGTERM
