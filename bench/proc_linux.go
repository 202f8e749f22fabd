package main

import "syscall"

// childProcAttr has a host's process killed if the bench dies before its
// deferred clean-up runs.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
