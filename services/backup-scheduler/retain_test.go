package backupscheduler

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
	lbsql "lifeboat.dev/sql"
)

func TestNextDue(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name         string
		due, started time.Time
		every        time.Duration
		want         time.Time
	}{
		{"on time keeps the cadence", t0, t0.Add(200 * time.Millisecond), time.Hour, t0.Add(time.Hour)},
		{"a little late keeps the cadence", t0, t0.Add(10 * time.Minute), time.Hour, t0.Add(time.Hour)},
		{"overdue by hours: one now, the next an interval later", t0, t0.Add(5 * time.Hour), time.Hour, t0.Add(6 * time.Hour)},
		{"late by exactly an interval", t0, t0.Add(time.Hour), time.Hour, t0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nextDue(tc.due, tc.started, tc.every); !got.Equal(tc.want) {
				t.Errorf("nextDue = %s, want %s", got, tc.want)
			}
		})
	}
}

func catalogRow(name string, at time.Time, state string) db.Backup {
	return db.Backup{Plan: "p", Name: name, NameTime: at.Unix(), State: state}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	spec := schedule.MustParse("1h,1d/7d")
	at := func(ago time.Duration) int64 { return now.Add(-ago).Unix() }
	valid := []db.BackupsForRetentionRow{
		{Name: "a", NameTime: at(30 * time.Minute)},
		{Name: "b", NameTime: at(40 * time.Minute)},   // same 1h slot as a, and older: kept, a pruned
		{Name: "c", NameTime: at(8 * 24 * time.Hour)}, // past T
		{Name: "g", NameTime: at(2*24*time.Hour + time.Hour)},
	}
	invalid := []db.BackupsInvalidRow{
		{Name: "d", NameTime: at(9 * 24 * time.Hour), Problem: "bad\nmanifest"}, // past T
		{Name: "e", NameTime: at(45 * time.Minute), Problem: "bad"},             // young: holds no slot, kept
	}
	pruned, kept := decide(spec, 0, valid, invalid, now)
	got := map[string]string{}
	for _, p := range pruned {
		got[p.Backup] = p.Reason
	}
	want := map[string]string{
		"a": "band 1 (1h) slot 0: newer than the kept oldest",
		"c": "T (7d) old or older",
		"d": "invalid (bad…) and T (7d) old or older",
	}
	if len(got) != len(want) {
		t.Fatalf("pruned %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if kept != 2 {
		t.Errorf("kept %d valid, want 2 (b, g)", kept)
	}

	// min_keep: the last good backup survives past T; an invalid one never
	// counts for it.
	oldValid := []db.BackupsForRetentionRow{{Name: "x", NameTime: at(30 * 24 * time.Hour)}}
	oldInvalid := []db.BackupsInvalidRow{{Name: "y", NameTime: at(8 * 24 * time.Hour), Problem: "bad"}}
	pruned, kept = decide(spec, 1, oldValid, oldInvalid, now)
	if len(pruned) != 1 || pruned[0].Backup != "y" || kept != 1 {
		t.Errorf("min_keep 1 over a failing plan: pruned %v kept %d", pruned, kept)
	}
	pruned, _ = decide(spec, 0, oldValid, oldInvalid, now)
	if len(pruned) != 2 {
		t.Errorf("min_keep 0: pruned %v, want both", pruned)
	}
}

// TestRemoveBackup: only exact backup names are deleted, and a deletion cut
// short leaves a temporary name that CleanTemp removes, never a partial
// backup under its final name.
func TestRemoveBackup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	name := backup.FormatName(time.Now().Truncate(time.Second))
	if err := os.MkdirAll(filepath.Join(dir, name, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"backup-latest", "../x", name + "x", "", "."} {
		if err := removeBackup(dir, bad); err == nil || !strings.Contains(err.Error(), "not a backup name") {
			t.Errorf("removeBackup(%q) = %v", bad, err)
		}
	}
	if err := removeBackup(dir, name); err != nil {
		t.Fatal(err)
	}
	if err := removeBackup(dir, name); err != nil {
		t.Errorf("removing a backup already gone: %v", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Errorf("left %v", got)
	}

	// A crash after the rename and before the removal.
	leftover := filepath.Join(dir, trashPrefix+name)
	if err := os.MkdirAll(filepath.Join(leftover, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if backup.IsName(filepath.Base(leftover)) {
		t.Fatalf("%s would be taken for a backup", leftover)
	}
	removed, err := backup.CleanTemp(context.Background(), dir)
	if err != nil || !slices.Equal(removed, []string{trashPrefix + name}) {
		t.Errorf("CleanTemp removed %v, %v; want the pruning leftover", removed, err)
	}
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	p := sqlitePlan("p", "1h,1d/7d", "/db", "/b")
	p.MinKeep = ptr(0)
	p, err := p.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	rows := []db.Backup{catalogRow("old", now.Add(-50*time.Minute), stateValid), catalogRow("new", now.Add(-10*time.Minute), stateValid)}
	tl := timeline(p, rows, now)
	if len(tl) != 2 || tl[0].Backup != "new" || tl[0].Keep || tl[1].Backup != "old" || !tl[1].Keep || tl[0].Age != "10m" {
		t.Errorf("timeline %+v", tl)
	}
	p.Disabled = true
	for _, r := range timeline(p, rows, now) {
		if !r.Keep {
			t.Errorf("a disabled plan's timeline deletes %s", r.Backup)
		}
	}
}

// TestDecideCatalog: a pass reads exactly what BackupsForRetention returns
// row by row (the plan's valid backups, names and times intact: nothing of
// another plan, nothing invalid or being pruned) through the packed string,
// and the invalid ones beside them; an empty catalog decides nothing.
func TestDecideCatalog(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	sdb, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"), store.NewOptions("test", migrations))
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	q := db.New(sdb.R)
	spec := schedule.MustParse("1h,1d/7d")
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)

	pruned, kept, err := decideCatalog(ctx, sdb.R, "p", spec, 1, now)
	if err != nil || len(pruned) != 0 || kept != 0 {
		t.Fatalf("empty catalog: pruned %v, kept %d, %v", pruned, kept, err)
	}

	zone := time.FixedZone("", -5*3600)
	name := func(ago time.Duration) string { return backup.FormatName(now.Add(-ago).In(zone)) }
	put := func(plan string, ago time.Duration, state, problem string) {
		t.Helper()
		err := sdb.Update(ctx, func(tx *store.Tx) error {
			return db.New(tx).BackupPut(ctx, db.BackupPutParams{Plan: plan, Name: name(ago), Dir: "/b", NameTime: now.Add(-ago).Unix(),
				State: state, Problem: problem, CheckedAt: now.UnixMilli()})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("p", 30*time.Minute, stateValid, "")
	put("p", 40*time.Minute, stateValid, "") // the oldest in its 1h slot: kept
	put("p", 8*24*time.Hour, stateValid, "") // past T
	put("p", 9*24*time.Hour, stateInvalid, "bad")
	put("p", 45*time.Minute, stateInvalid, "bad")          // young: kept, holds no slot
	put("p", 50*time.Minute, statePruning, "earlier pass") // being removed: not decided again
	put("other", 35*time.Minute, stateValid, "")

	rows, err := q.BackupsForRetention(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	packed, err := q.BackupsForRetentionPacked(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	unpacked, err := unpackRetention(packed)
	if err != nil {
		t.Fatal(err)
	}
	var want []schedule.Backup
	for _, r := range rows {
		want = append(want, schedule.Backup{Name: r.Name, Time: time.Unix(r.NameTime, 0), Verified: true})
	}
	byName := func(a, b schedule.Backup) int { return strings.Compare(a.Name, b.Name) }
	slices.SortFunc(want, byName)
	slices.SortFunc(unpacked, byName)
	if len(want) != 3 || !slices.EqualFunc(unpacked, want, sameBackup) {
		t.Errorf("packed %q unpacks to %v; row by row %v", packed, unpacked, rows)
	}

	pruned, kept, err = decideCatalog(ctx, sdb.R, "p", spec, 0, now)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range pruned {
		got[p.Backup] = p.Reason
	}
	wantPruned := map[string]string{
		name(30 * time.Minute):   "band 1 (1h) slot 0: newer than the kept oldest",
		name(8 * 24 * time.Hour): "T (7d) old or older",
		name(9 * 24 * time.Hour): "invalid (bad) and T (7d) old or older",
	}
	if !maps.Equal(got, wantPruned) {
		t.Errorf("pruned %v, want %v", got, wantPruned)
	}
	if kept != 1 {
		t.Errorf("kept %d valid, want 1", kept)
	}
}

func sameBackup(a, b schedule.Backup) bool {
	return a.Name == b.Name && a.Time.Equal(b.Time) && a.Verified == b.Verified
}

func TestUnpackRetention(t *testing.T) {
	t.Parallel()
	got, err := unpackRetention("1736510400 backup-2025-01-10_07-00-00-0500,-60 backup-1969-12-31_23-59-00+0000")
	if err != nil {
		t.Fatal(err)
	}
	want := []schedule.Backup{
		{Name: "backup-2025-01-10_07-00-00-0500", Time: time.Unix(1736510400, 0), Verified: true},
		{Name: "backup-1969-12-31_23-59-00+0000", Time: time.Unix(-60, 0), Verified: true},
	}
	if !slices.EqualFunc(got, want, sameBackup) {
		t.Errorf("unpacked %v, want %v", got, want)
	}
	if got, err := unpackRetention(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
	for _, bad := range []string{"x backup-a", "12", "12 ", "1,2 b", "12 a,", ","} {
		if _, err := unpackRetention(bad); err == nil {
			t.Errorf("unpackRetention(%q) read it", bad)
		}
	}
}
