package lease

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Skew estimates the clock skew between this host and every host it hears
// heartbeats from (DESIGN §1 "Instances": the margin of a lease must cover
// it, since the stream leader that expires a key judges by its own clock).
// A heartbeat carries its send time by the sender's clock; received minus
// sent is the skew plus the network's delay, which only adds, so the
// estimate is the sample of least magnitude over the last Window.
type Skew struct {
	// Window is how long samples count (default 2 minutes).
	Window time.Duration

	mu    sync.Mutex
	hosts map[string][]sample
}

type sample struct {
	at   time.Time
	skew time.Duration
}

// Observe records a heartbeat of host sent at sent (its clock), received
// at received (ours).
func (s *Skew) Observe(host string, sent, received time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil {
		s.hosts = map[string][]sample{}
	}
	window := s.Window
	if window <= 0 {
		window = 2 * time.Minute
	}
	kept := s.hosts[host][:0]
	for _, x := range s.hosts[host] {
		if received.Sub(x.at) <= window {
			kept = append(kept, x)
		}
	}
	s.hosts[host] = append(kept, sample{at: received, skew: received.Sub(sent)})
}

// Hosts is every host's estimated skew: positive when its clock is behind
// ours.
func (s *Skew) Hosts() map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Duration, len(s.hosts))
	for h, xs := range s.hosts {
		if len(xs) == 0 {
			continue
		}
		best := xs[0].skew
		for _, x := range xs[1:] {
			if x.skew.Abs() < best.Abs() {
				best = x.skew
			}
		}
		out[h] = best
	}
	return out
}

// Max is the largest skew in magnitude, and its host.
func (s *Skew) Max() (string, time.Duration) {
	var host string
	var max time.Duration
	hosts := s.Hosts()
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		if d := hosts[h]; d.Abs() > max.Abs() {
			host, max = h, d
		}
	}
	return host, max
}

// Check fails, naming the host and the numbers, when a host's skew
// exceeds margin.
func (s *Skew) Check(margin time.Duration) error {
	host, d := s.Max()
	if d.Abs() > margin {
		return fmt.Errorf("the clock of %s differs from this host's by %s, more than the lease margin %s: leases could expire before their holders step down; synchronise the clocks (NTP) or raise the margin",
			host, d.Abs().Round(time.Millisecond), margin)
	}
	return nil
}
