package testtool

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWaitForReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	start := time.Now()
	WaitFor(t, 10*time.Second, func() error {
		calls++
		if calls < 5 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	// 1+2+4+8 ms of polls: nowhere near a fixed 50 ms a try.
	if took := time.Since(start); calls != 5 || took > 2*time.Second {
		t.Fatalf("%d calls in %s, want 5 calls and no long wait", calls, took)
	}
}

func TestWaitForFailsWithTheLastError(t *testing.T) {
	r := &recorder{TB: t}
	calls := 0
	start := time.Now()
	WaitFor(r, 200*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("%d rows, want 3", calls)
	})
	took := time.Since(start)
	if r.fatal == "" {
		t.Fatal("WaitFor did not fail t for a condition that never held")
	}
	want := fmt.Sprintf("%d rows, want 3", calls)
	if !strings.HasSuffix(r.fatal, want) || !strings.Contains(r.fatal, "200ms") {
		t.Fatalf("failure %q, want the timeout and the last error %q", r.fatal, want)
	}
	if took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %s, want about the 200ms timeout", took)
	}
	// The interval grows to 50 ms: about 8 tries in 200 ms, not 200.
	if calls < 3 || calls > 30 {
		t.Fatalf("%d tries in 200ms, want the poll to start small and grow", calls)
	}
}

func TestWaitForTriesAtLeastOnce(t *testing.T) {
	r := &recorder{TB: t}
	WaitFor(r, 0, func() error { return errors.New("never") })
	if !strings.Contains(r.fatal, "never") {
		t.Fatalf("failure %q, want the condition's error", r.fatal)
	}
	ok := &recorder{TB: t}
	WaitFor(ok, 0, func() error { return nil })
	if ok.fatal != "" {
		t.Fatalf("a condition that holds at once failed: %q", ok.fatal)
	}
}

func TestFreeAddrAndPortsCanBeListenedOn(t *testing.T) {
	addr := FreeAddr(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("FreeAddr = %q, want a loopback address", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr's %s: %v", addr, err)
	}
	l.Close()
	ports := FreePorts(t, 5)
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("FreePorts = %v, want 5 distinct ports", ports)
		}
		seen[p] = true
	}
}

func TestLockedBufferUnderConcurrentWriters(t *testing.T) {
	var b LockedBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprint(&b, "x")
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := len(b.String()); n != 800 {
		t.Fatalf("%d bytes, want 800", n)
	}
}
