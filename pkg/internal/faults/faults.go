// Package faults kills the process at named points, for crash tests: a test
// starts a subprocess with LIFEBOAT_FAULT=<point> (and optionally
// LIFEBOAT_FAULT_AFTER=<n>, the hit that kills), and the subprocess SIGKILLs
// itself when it reaches that point — a kill -9 at a precise moment, such as
// between a commit and its ack. Without the variable a point costs one string
// comparison.
package faults

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

var (
	point = os.Getenv("LIFEBOAT_FAULT")
	after = envInt("LIFEBOAT_FAULT_AFTER", 1)
	hits  atomic.Int64
)

// Point kills the process with SIGKILL if it is the configured fault point
// and has been reached the configured number of times.
func Point(name string) {
	if point == "" || point != name {
		return
	}
	if hits.Add(1) >= int64(after) {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
