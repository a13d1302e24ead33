package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitWithParent asks the kernel for SIGTERM when the parent process ends
// (make run starts the API beside the worker, which replaces the script:
// when the worker stops, the API must not linger holding its port). It
// reports false when the parent is already gone.
func exitWithParent() bool {
	parent := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGTERM), 0, 0, 0); err != nil {
		return true // best effort: a development convenience only
	}
	return os.Getppid() == parent
}
