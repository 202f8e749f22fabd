package backupscheduler

import (
	"sync"
	"time"
)

// fakeClock is the service's clock in tests (service.Deps.Now): it stands
// still until Advance moves it, and each move wakes the schedulers that
// run on it, so a schedule such as 1s,2s/4s runs as fast as the backups
// are taken, not at the wall clock's pace.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	wakes []func()
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start} }

// Now is the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock on by d and wakes whoever watches it.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	wakes := append([]func(){}, c.wakes...)
	c.mu.Unlock()
	for _, w := range wakes {
		w()
	}
}

// onAdvance calls w after every move of the clock.
func (c *fakeClock) onAdvance(w func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wakes = append(c.wakes, w)
}
