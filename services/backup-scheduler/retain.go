package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// Catalog states of a backup.
const (
	stateValid   = "valid"   // its manifest verifies: it may be restored from
	stateInvalid = "invalid" // it does not verify: never offered for restore
	statePruning = "pruning" // retention deleted it; its removal may be unfinished
)

// trashPrefix starts the name a pruned backup is renamed to before it is
// deleted. It begins with pkg/backup's temporary prefix (".tmp-backup-"),
// so backup.CleanTemp removes what a crash left (TestRemoveBackup holds
// the two together).
const trashPrefix = ".tmp-backup-pruned-"

// decide runs the retention rule over a plan's catalog at now: the valid
// backups by schedule.Spec.Retain with min_keep, and the invalid ones,
// which never hold a slot (an unrestorable backup must not displace a good
// one) and are deleted once T old. It returns what to prune with the rule
// for each, and how many valid backups stay.
func decide(spec schedule.Spec, minKeep int, valid []db.BackupsForRetentionRow, invalid []db.BackupsInvalidRow, now time.Time) (pruned []events.PrunedBackup, kept int) {
	cands := make([]schedule.Backup, len(valid))
	for i, r := range valid {
		cands[i] = schedule.Backup{Name: r.Name, Time: time.Unix(r.NameTime, 0), Verified: true}
	}
	return decideBackups(spec, minKeep, cands, invalid, now)
}

// decideBackups is decide with the valid backups as the rule takes them.
func decideBackups(spec schedule.Spec, minKeep int, valid []schedule.Backup, invalid []db.BackupsInvalidRow, now time.Time) (pruned []events.PrunedBackup, kept int) {
	pruned = make([]events.PrunedBackup, 0, len(invalid)+len(valid))
	for _, r := range invalid {
		if now.Sub(time.Unix(r.NameTime, 0)) >= spec.Total() {
			pruned = append(pruned, events.PrunedBackup{Backup: r.Name,
				Reason: "invalid (" + short(r.Problem) + ") and T (" + schedule.FormatDuration(spec.Total()) + ") old or older"})
		}
	}
	for _, d := range spec.Retain(now, valid, minKeep) {
		if d.Keep {
			kept++
			continue
		}
		pruned = append(pruned, events.PrunedBackup{Backup: d.Backup.Name, Reason: d.Rule})
	}
	return pruned, kept
}

// decideCatalog reads a plan's catalog and decides its retention at now.
// The valid backups, all of a crowded catalog, come in one string
// (BackupsForRetentionPacked): read row by row, 100k of them took 70 to
// 100 ms of driver calls and 400k allocations, most of a pass.
func decideCatalog(ctx context.Context, r db.DBTX, plan string, spec schedule.Spec, minKeep int, now time.Time) ([]events.PrunedBackup, int, error) {
	q := db.New(r)
	packed, err := q.BackupsForRetentionPacked(ctx, plan)
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: %w", err)
	}
	valid, err := unpackRetention(packed)
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: %w", err)
	}
	invalid, err := q.BackupsInvalid(ctx, plan)
	if err != nil {
		return nil, 0, fmt.Errorf("catalog: %w", err)
	}
	pruned, kept := decideBackups(spec, minKeep, valid, invalid, now)
	return pruned, kept, nil
}

// unpackRetention reads BackupsForRetentionPacked's string ("name_time
// name" of each valid backup, joined with commas) into the rule's input.
// The names are substrings of packed: no allocation per backup.
func unpackRetention(packed string) ([]schedule.Backup, error) {
	if packed == "" {
		return nil, nil
	}
	out := make([]schedule.Backup, 0, strings.Count(packed, ",")+1)
	for rest := packed; ; {
		rec, next, more := strings.Cut(rest, ",")
		at, name, ok := strings.Cut(rec, " ")
		sec, err := strconv.ParseInt(at, 10, 64)
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("retention: unreadable catalog entry %q", rec)
		}
		out = append(out, schedule.Backup{Name: name, Time: time.Unix(sec, 0), Verified: true})
		if !more {
			return out, nil
		}
		rest = next
	}
}

// RetentionPass is the deciding half of a pruning pass, for benchmarks: it
// reads plan's catalog from the service database r and applies the rule at
// now, returning how many backups a pass would prune and keep. It deletes
// nothing.
func RetentionPass(ctx context.Context, r *sql.DB, plan string, spec schedule.Spec, minKeep int, now time.Time) (pruned, kept int, err error) {
	p, k, err := decideCatalog(ctx, r, plan, spec, minKeep, now)
	return len(p), k, err
}

// short cuts a problem to one line for a pruning reason.
func short(s string) string {
	for i, c := range s {
		if c == '\n' || i >= 120 {
			return s[:i] + "…"
		}
	}
	return s
}

// prune is a plan's retention pass. A disabled plan deletes nothing. The
// pruned backups are marked and BackupPruned is queued in one transaction,
// then the directories are removed and their rows deleted: a crash in
// between leaves rows marked pruning, whose removal the next pass or
// rebuild finishes, so every pruned backup is announced exactly once.
func (s *Service) prune(ctx context.Context, p Plan) ([]events.PrunedBackup, error) {
	if p.Disabled {
		return nil, nil
	}
	now := time.Now()
	s.mu.Lock()
	s.pruned[p.Name] = now
	s.mu.Unlock()
	pruned, kept, err := decideCatalog(ctx, s.rt.DB.R, p.Name, p.Spec(), p.minKeep(), now)
	if err != nil {
		return nil, err
	}
	if len(pruned) > 0 {
		err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
			q := db.New(tx)
			for _, b := range pruned {
				if err := q.BackupSetState(ctx, db.BackupSetStateParams{State: statePruning, Problem: b.Reason, CheckedAt: now.UnixMilli(), Plan: p.Name, Name: b.Backup}); err != nil {
					return fmt.Errorf("catalog: %w", err)
				}
			}
			_, err := tx.Emit(ctx, &events.BackupPruned{
				Plan: p.Name, Instance: p.Instance, Host: s.host, Targets: p.Targets, Pruned: pruned, Kept: kept, PrunedAt: now.UTC(),
			})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, b := range pruned {
			s.log.Info("backup pruned", slog.String("plan", p.Name), slog.String("backup", b.Backup), slog.String("rule", b.Reason))
		}
	}
	// Announced is done: the removal goes on even when the service is
	// stopping (the scheduler waits for it), so that a clean shutdown never
	// leaves a backup on disk that BackupPruned said was deleted. Only a
	// crash does, and the next start finishes it.
	return pruned, s.finishPruning(context.WithoutCancel(ctx), p)
}

// finishPruning removes the directories of the plan's backups marked
// pruning and then their rows.
func (s *Service) finishPruning(ctx context.Context, p Plan) error {
	rows, err := db.New(s.rt.DB.R).BackupsOfPlan(ctx, p.Name)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	var done []string
	var errs []error
	for _, r := range rows {
		if r.State != statePruning {
			continue
		}
		if err := removeBackup(r.Dir, r.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, r.Name)
	}
	if len(done) > 0 {
		err := s.rt.DB.Update(context.WithoutCancel(ctx), func(tx *store.Tx) error {
			q := db.New(tx)
			for _, n := range done {
				if err := q.BackupDelete(ctx, db.BackupDeleteParams{Plan: p.Name, Name: n}); err != nil {
					return fmt.Errorf("catalog: %w", err)
				}
			}
			return nil
		})
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeBackup deletes backup name from dir. Only a name of the exact
// backup form is ever deleted. The directory is first renamed to a
// temporary name, so that a crash halfway through the deletion never
// leaves a partial backup under its final name.
func removeBackup(dir, name string) error {
	if !backup.IsName(name) {
		return fmt.Errorf("prune: %q is not a backup name; refusing to delete it", name)
	}
	tmp := filepath.Join(dir, trashPrefix+name)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("prune %s: %w", name, err)
	}
	err := os.Rename(filepath.Join(dir, name), tmp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // already gone (deleted by hand, or before a crash)
	case err != nil:
		return fmt.Errorf("prune %s: %w (make %s writable by the lifeboat process)", name, err, dir)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename first: a torn deletion is never under the final name
		d.Close()
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("prune %s: %w (what is left, %s, is removed at the next start)", name, err, tmp)
	}
	return nil
}
