package lease_test

import (
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/lease"
)

// beat is a heartbeat: sent at our time at, by a clock offset ahead of
// ours, delivered after delay.
type beat struct {
	host          string
	at            time.Duration // since t0, our clock
	offset, delay time.Duration
}

func TestSkew(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	for _, c := range []struct {
		name    string
		window  time.Duration
		beats   []beat
		want    map[string]time.Duration
		maxHost string
		check   string // Check(1s)'s error, "" for none
	}{
		{name: "nobody heard", want: map[string]time.Duration{}},
		{
			name: "the least delayed heartbeat wins",
			beats: []beat{
				{"cold", 0, 3 * time.Second, 40 * ms}, {"cold", 5 * time.Second, 3 * time.Second, 2 * ms}, {"cold", 10 * time.Second, 3 * time.Second, 900 * ms},
				{"witness", 0, -200 * ms, 5 * ms}, {"witness", 5 * time.Second, -200 * ms, 30 * ms},
			},
			want:    map[string]time.Duration{"cold": 2998 * ms, "witness": -205 * ms},
			maxHost: "cold",
			check:   "lease: the clock of host cold is 2.998s ahead of this host's, more than the lease margin 1s",
		},
		{
			name:    "a clock behind",
			beats:   []beat{{"hot", 0, -3 * time.Second, 10 * ms}, {"hot", time.Second, -3 * time.Second, 1 * ms}},
			want:    map[string]time.Duration{"hot": -3001 * ms},
			maxHost: "hot",
			check:   "the clock of host hot is 3.001s behind this host's, more than the lease margin 1s",
		},
		{
			// A lead about the delay puts received − sent on both sides of
			// zero: the least magnitude would say 0, the least delay 10ms.
			name:    "samples straddling zero",
			beats:   []beat{{"cold", 0, 20 * ms, 10 * ms}, {"cold", time.Second, 20 * ms, 20 * ms}, {"cold", 2 * time.Second, 20 * ms, 40 * ms}},
			want:    map[string]time.Duration{"cold": 10 * ms},
			maxHost: "cold",
		},
		{
			name:   "old heartbeats and silent hosts age out",
			window: time.Minute,
			beats: []beat{
				{"cold", 0, 5 * time.Second, 1 * ms}, // the clock was fixed since
				{"gone", 0, 9 * time.Second, 1 * ms},
				{"cold", 2 * time.Minute, 100 * ms, 50 * ms},
			},
			want:    map[string]time.Duration{"cold": 50 * ms},
			maxHost: "cold",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := &lease.Skew{Window: c.window}
			for _, b := range c.beats {
				at := t0.Add(b.at)
				s.Observe(b.host, at.Add(b.offset), at.Add(b.delay))
			}
			got := s.Hosts()
			if len(got) != len(c.want) {
				t.Fatalf("Hosts = %v, want %v", got, c.want)
			}
			for h, d := range c.want {
				if got[h] != d {
					t.Fatalf("Hosts = %v, want %v", got, c.want)
				}
			}
			if h, d := s.Max(); h != c.maxHost || (h != "" && d != c.want[h]) {
				t.Fatalf("Max = %s %s, want %s %s", h, d, c.maxHost, c.want[c.maxHost])
			}
			err := s.Check(time.Second)
			switch {
			case c.check == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case c.check != "" && (err == nil || !strings.Contains(err.Error(), c.check)):
				t.Fatalf("Check: %v, want %q", err, c.check)
			}
			s.Forget(c.maxHost)
			if _, ok := s.Hosts()[c.maxHost]; ok && c.maxHost != "" {
				t.Fatalf("%s not forgotten", c.maxHost)
			}
		})
	}
}
