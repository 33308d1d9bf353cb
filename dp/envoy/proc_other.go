//go:build !unix

package envoy

import (
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// terminateSignal: without SIGTERM, Envoy is killed (after the drain).
var terminateSignal os.Signal = os.Kill
