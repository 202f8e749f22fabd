package schedule

import (
	"errors"
	"fmt"
	"time"
)

// Band is one band of a schedule: the backups whose age is in [From, To),
// kept one per Spacing-long slot.
type Band struct {
	From, To time.Duration
	Spacing  time.Duration
	Keeps    int // slots in the band: the most backups it ever keeps
}

// Bands returns the schedule's bands, youngest first.
func (s Spec) Bands() []Band {
	bands := make([]Band, len(s.intervals))
	for i, d := range s.intervals {
		b := Band{To: s.total, Spacing: d}
		if i > 0 {
			b.From = d
		}
		if i+1 < len(s.intervals) {
			b.To = s.intervals[i+1]
		}
		b.Keeps = int((b.To - b.From) / d)
		bands[i] = b
	}
	return bands
}

// SteadyState is the most backups the schedule keeps once it has run for
// T, taking one backup every d1: one per slot of every band ("1h,1d/7d":
// 24 + 6 = 30).
func (s Spec) SteadyState() int {
	n := 0
	for _, b := range s.Bands() {
		n += b.Keeps
	}
	return n
}

// Explanation is what `lifeboat schedule explain` shows.
type Explanation struct {
	Spec        Spec
	Bands       []Band
	SteadyState int
}

// Explain describes s: its bands and its steady-state count.
func Explain(s Spec) Explanation {
	return Explanation{Spec: s, Bands: s.Bands(), SteadyState: s.SteadyState()}
}

// MaxSimulated bounds the number of backups Simulate takes, so a typo such
// as --every 1s --for 52w fails at once instead of running for minutes.
const MaxSimulated = 1_000_000

// simStart is the simulation's clock at its first backup; any fixed time
// would do, since only ages matter.
var simStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// Simulate takes one verified backup every `every`, the first at the start
// and the last before `span` has passed, and applies Retain with minKeep
// after each. It returns the ages of the backups kept after the last one,
// newest first (so the first age is 0).
func Simulate(spec Spec, every, span time.Duration, minKeep int) ([]time.Duration, error) {
	var ages []time.Duration
	err := simulate(spec, every, span, minKeep, func(now time.Time, kept []Backup) {
		ages = ages[:0]
		for i := len(kept) - 1; i >= 0; i-- {
			ages = append(ages, now.Sub(kept[i].Time))
		}
	})
	return ages, err
}

// simulate runs the simulation and calls observe after each pruning with
// the backups kept, oldest first.
func simulate(spec Spec, every, span time.Duration, minKeep int, observe func(now time.Time, kept []Backup)) error {
	if len(spec.intervals) == 0 {
		return errors.New("simulate: no schedule")
	}
	if every <= 0 {
		return fmt.Errorf("simulate: every is %v; it must be longer than zero", every)
	}
	if span <= 0 {
		return fmt.Errorf("simulate: span is %v; it must be longer than zero", span)
	}
	steps := (span-1)/every + 1
	if steps > MaxSimulated {
		return fmt.Errorf("simulate: a backup every %s for %s is %d backups; at most %d (take fewer: a longer every or a shorter span)",
			FormatDuration(every), FormatDuration(span), steps, MaxSimulated)
	}
	var kept []Backup
	for k := time.Duration(0); k < steps; k++ {
		now := simStart.Add(k * every)
		kept = append(kept, Backup{Name: now.Format(time.RFC3339), Time: now, Verified: true})
		next := kept[:0]
		for _, d := range spec.Retain(now, kept, minKeep) {
			if d.Keep {
				next = append(next, d.Backup) // safe: decisions are copies, in order
			}
		}
		kept = next
		observe(now, kept)
	}
	return nil
}
