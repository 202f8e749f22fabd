package backupscheduler

import (
	"cmp"
	"slices"
	"time"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The retention timeline `lifeboat plan show` prints: what a pruning pass
// would do now with each backup of the plan, and by which rule.

// timeline is what a pruning pass at now would do with each backup, newest
// first.
func timeline(p Plan, rows []db.Backup, now time.Time) []api.Retained {
	var valid []db.BackupsForRetentionRow
	var invalid []db.BackupsInvalidRow
	for _, r := range rows {
		switch r.State {
		case stateValid:
			valid = append(valid, db.BackupsForRetentionRow{Name: r.Name, NameTime: r.NameTime})
		case stateInvalid:
			invalid = append(invalid, db.BackupsInvalidRow{Name: r.Name, NameTime: r.NameTime, Problem: r.Problem})
		}
	}
	pruned, _ := decide(p.Spec(), p.minKeep(), valid, invalid, now)
	why := map[string]string{}
	for _, b := range pruned {
		why[b.Backup] = b.Reason
	}
	var cands []schedule.Backup
	for _, r := range rows {
		if r.State == stateValid {
			cands = append(cands, schedule.Backup{Name: r.Name, Time: time.Unix(r.NameTime, 0), Verified: true})
		}
	}
	keepWhy := map[string]string{}
	for _, d := range p.Spec().Retain(now, cands, p.minKeep()) {
		if d.Keep {
			keepWhy[d.Backup.Name] = d.Rule
		}
	}
	// Youngest first: the newest name time first.
	rows = slices.Clone(rows)
	slices.SortStableFunc(rows, func(a, b db.Backup) int { return cmp.Compare(b.NameTime, a.NameTime) })
	out := []api.Retained{}
	for _, r := range rows {
		age := now.Sub(time.Unix(r.NameTime, 0))
		t := api.Retained{Backup: r.Name, Age: schedule.FormatDuration(age.Truncate(time.Second)), AgeSecs: int64(age / time.Second), State: r.State}
		switch {
		case why[r.Name] != "":
			t.Rule = why[r.Name]
		case r.State == stateValid:
			t.Keep, t.Rule = true, keepWhy[r.Name]
		case r.State == statePruning:
			t.Rule = "being pruned: " + r.Problem
		default:
			t.Keep, t.Rule = true, "invalid: kept until T old, never restored"
		}
		if p.Disabled {
			t.Keep, t.Rule = true, "plan disabled: nothing is deleted"
		}
		out = append(out, t)
	}
	return out
}
