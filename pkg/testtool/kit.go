package testtool

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// The poll interval of WaitFor starts at pollMin and doubles after every
// failed try up to pollMax: a condition that holds almost at once is seen
// within a millisecond or two, and one that takes seconds (a subprocess, a
// cluster election) is not asked hundreds of times a second on a machine
// that several test binaries share.
const (
	pollMin = time.Millisecond
	pollMax = 50 * time.Millisecond
)

// WaitFor calls cond until it returns nil, and fails t when it has not
// within timeout, with cond's last error: that error is the test's message,
// so it should say what was seen and what was wanted ("3 events, want 4").
// cond is called at least once, and once more at the deadline.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	poll := pollMin
	for tries := 1; ; tries++ {
		err := cond()
		if err == nil {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("not within %s (%d tries): %v", timeout, tries, err)
			return
		}
		time.Sleep(min(poll, left))
		poll = min(2*poll, pollMax)
	}
}

// FreeAddr returns a loopback address "127.0.0.1:port" whose port was free
// a moment ago, for a server that a test starts and that takes an address
// rather than a listener.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := PickAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// PickAddr is FreeAddr for code without a testing.TB (benchmarks run as
// programs).
func PickAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago: all n listeners are open at once, so no port repeats.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// LockedBuffer is a bytes.Buffer that a logger or a subprocess writes to
// while the test reads it. The zero value is ready to use.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns a copy of what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
