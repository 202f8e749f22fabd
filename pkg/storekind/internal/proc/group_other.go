//go:build !unix

package proc

import "os/exec"

// killGroup leaves exec's default: cancellation kills the command itself.
func killGroup(*exec.Cmd) {}
