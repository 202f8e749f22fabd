//go:build !linux

package main

import "syscall"

// childProcAttr: only Linux can have a child killed when its parent dies;
// elsewhere the bench's deferred clean-up is all there is.
func childProcAttr() *syscall.SysProcAttr { return nil }
