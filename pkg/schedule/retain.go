package schedule

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Backup is one backup as retention sees it.
type Backup struct {
	Name     string    // the backup's directory name
	Time     time.Time // the time in its name; its age is measured from this
	Verified bool      // its manifest verifies; only these count for min_keep
}

// Decision is what retention does with one backup, and why.
type Decision struct {
	Backup Backup
	Keep   bool
	// Rule says why, for the operator and the BackupPruned event:
	// "band 2 (1d) slot 3: oldest in slot", "band 2 (1d) slot 3: newer than
	// the kept oldest", "T (7d) old or older", "min_keep: one of the newest
	// 1 verified", "in the future (clock skew?)".
	Rule string
}

// Retain decides which backups to keep at time now, by the rule in the
// package documentation: in each slot of each band the oldest backup is
// kept and the others deleted, and backups T old or older are deleted.
//
// Two guards override the rule. The newest minKeep verified backups are
// always kept, even past T, so a plan whose backups have been failing for
// longer than T still has its last good one. A backup whose time is after
// now (a clock that stepped back) is kept: its age is unknown.
//
// Among backups with the same time the one with the smaller name counts as
// older (then the earlier in the slice), so the result is deterministic.
// The decisions are in the order of backups. A pass sorts once: O(n log n).
func (s Spec) Retain(now time.Time, backups []Backup, minKeep int) []Decision {
	out := make([]Decision, len(backups))
	for i, b := range backups {
		out[i].Backup = b
	}
	if len(s.intervals) == 0 {
		for i := range out {
			out[i].Keep, out[i].Rule = true, "no schedule"
		}
		return out
	}

	// Oldest first, so the first backup met in a slot is the one it keeps.
	type entry struct {
		age time.Duration
		i   int
	}
	order := make([]entry, len(backups))
	for i, b := range backups {
		order[i] = entry{now.Sub(b.Time), i}
	}
	slices.SortFunc(order, func(x, y entry) int {
		if x.age != y.age {
			if x.age > y.age {
				return -1
			}
			return 1
		}
		return older(backups, x.i, y.i)
	})

	tooOld := "T (" + formatUnit(s.total) + ") old or older"
	prefix := make([]string, len(s.intervals)) // "band 2 (1d) slot "
	for b, d := range s.intervals {
		prefix[b] = "band " + strconv.Itoa(b+1) + " (" + formatUnit(d) + ") slot "
	}
	band := len(s.intervals) - 1 // ages only fall as we walk, so the band index does too
	curBand, curSlot := -1, int64(-1)
	var dropRule string
	for _, e := range order {
		d := &out[e.i]
		switch {
		case e.age >= s.total:
			d.Rule = tooOld
		case e.age < 0:
			d.Keep, d.Rule = true, "in the future (clock skew?)"
		default:
			for band > 0 && e.age < s.intervals[band] {
				band--
			}
			start := time.Duration(0)
			if band > 0 {
				start = s.intervals[band]
			}
			slot := int64((e.age - start) / s.intervals[band])
			if band != curBand || slot != curSlot {
				curBand, curSlot, dropRule = band, slot, ""
				d.Keep, d.Rule = true, prefix[band]+strconv.FormatInt(slot, 10)+": oldest in slot"
				continue
			}
			if dropRule == "" {
				dropRule = prefix[band] + strconv.FormatInt(slot, 10) + ": newer than the kept oldest"
			}
			d.Rule = dropRule
		}
	}

	if minKeep > 0 {
		guard := "min_keep: one of the newest " + strconv.Itoa(minKeep) + " verified"
		n := 0
		for k := len(order) - 1; k >= 0 && n < minKeep; k-- {
			d := &out[order[k].i]
			if !d.Backup.Verified {
				continue
			}
			n++
			if !d.Keep {
				d.Keep, d.Rule = true, guard
			}
		}
	}
	return out
}

// older orders backups i and j of the same age: by time, then name, then
// position, so that no two compare equal.
func older(backups []Backup, i, j int) int {
	if c := backups[i].Time.Compare(backups[j].Time); c != 0 {
		return c
	}
	if c := strings.Compare(backups[i].Name, backups[j].Name); c != 0 {
		return c
	}
	return i - j
}
