package lease

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// DefaultSkewWindow is how long a heartbeat counts towards a skew estimate.
const DefaultSkewWindow = 2 * time.Minute

// Skew estimates how far the clocks of the hosts this host hears
// heartbeats from are ahead of its own (DESIGN §1 "Instances": a lease's
// margin must cover it, since the stream leader that expires a key judges
// by its own clock). Its zero value is ready; it is safe for concurrent use.
//
// A heartbeat carries its send time by the sender's clock. Sent minus
// received is the sender's lead minus the network's delay, and the delay
// only ever subtracts: the estimate is the largest sent − received of the
// last Window, the sample with the least delay in it. (The least |received
// − sent| would be wrong when a clock is ahead by about the delay: its
// samples straddle zero.) A host not heard from for a Window, measured by
// the newest heartbeat from any host, is dropped.
type Skew struct {
	// Window is how long samples count (default 2 minutes).
	Window time.Duration

	mu     sync.Mutex
	hosts  map[string][]sample
	latest time.Time // the newest receive time of any sample
}

type sample struct {
	at   time.Time     // received, by our clock
	lead time.Duration // sent − received
}

func (s *Skew) window() time.Duration {
	if s.Window <= 0 {
		return DefaultSkewWindow
	}
	return s.Window
}

// Observe records a heartbeat of host sent at sent (by its clock) and
// received at received (by ours).
func (s *Skew) Observe(host string, sent, received time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hosts == nil {
		s.hosts = map[string][]sample{}
	}
	if received.After(s.latest) {
		s.latest = received
	}
	s.hosts[host] = append(s.hosts[host], sample{at: received, lead: sent.Sub(received)})
	s.prune()
}

// prune drops the samples older than the window, by the newest sample.
func (s *Skew) prune() {
	for h, xs := range s.hosts {
		xs = slices.DeleteFunc(xs, func(x sample) bool { return s.latest.Sub(x.at) > s.window() })
		if len(xs) == 0 {
			delete(s.hosts, h)
		} else {
			s.hosts[h] = xs
		}
	}
}

// Forget drops host's samples (it left the cluster).
func (s *Skew) Forget(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hosts, host)
}

// Hosts is every heard host's estimated skew: how far its clock is ahead of
// ours (negative: behind).
func (s *Skew) Hosts() map[string]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Duration, len(s.hosts))
	for h, xs := range s.hosts {
		best := xs[0].lead
		for _, x := range xs[1:] {
			best = max(best, x.lead)
		}
		out[h] = best
	}
	return out
}

// Max is the skew of largest magnitude and its host ("" and 0 when no
// host has been heard); of equal ones, the first host by name.
func (s *Skew) Max() (string, time.Duration) {
	var host string
	var most time.Duration
	hosts := s.Hosts()
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		if d := hosts[h]; host == "" || d.Abs() > most.Abs() {
			host, most = h, d
		}
	}
	return host, most
}

// Check fails, naming the host and the numbers, when a host's clock is
// further from ours than margin.
func (s *Skew) Check(margin time.Duration) error {
	host, d := s.Max()
	if d.Abs() <= margin {
		return nil
	}
	way := "ahead of"
	if d < 0 {
		way = "behind"
	}
	return fmt.Errorf("lease: the clock of host %s is %s %s this host's, more than the lease margin %s: a lease could expire before its holder steps down; synchronise the clocks (NTP) or raise the margin",
		host, d.Abs().Round(time.Millisecond), way, margin)
}
