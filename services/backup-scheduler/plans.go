package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// Plan storage: the plans table holds, on each host, each plan's
// definition as this host runs it (the config file's declaration with the
// changes made at run time, which plan_changes holds alike on every host:
// planchanges.go) and the scheduler's state of it.

// Plan origins, in the plans table.
const (
	originConfig  = "config"  // declared by the config file
	originAPI     = "api"     // created at run time (lifeboat plan set)
	originBuiltin = "builtin" // lifeboat-self
)

// applyConfig brings the plans table in line with the config file: a plan
// whose declaration is new or changed since it was last applied takes the
// declaration, over the run-time changes made so far; one whose
// declaration is unchanged keeps its run-time changes, and takes those it
// has not taken yet (planchanges.go); a plan the file no longer declares is
// dropped (its backups are left on disk). A stored definition that cannot
// be read is reported and replaced by the file's declaration, keeping the
// plan's catalog and state.
func (s *Service) applyConfig(ctx context.Context, decls []Plan) error {
	now := s.now()
	return s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		rows, err := q.PlanList(ctx)
		if err != nil {
			return fmt.Errorf("plans: %w", err)
		}
		existing := map[string]db.Plan{}
		for _, r := range rows {
			existing[r.Name] = r
		}
		declared := map[string]bool{}
		for _, p := range decls {
			declared[p.Name] = true
			origin := originConfig
			if p.Name == SelfPlan {
				origin = originBuiltin
			}
			h := p.hash()
			old, ok := existing[p.Name]
			if ok && old.ConfigHash == h {
				continue
			}
			// The file's declaration wins over the changes made so far
			// (planchanges.go); later ones apply on top of it.
			if err := overrideChanges(ctx, q, p.Name); err != nil {
				return err
			}
			var prev *db.Plan
			if ok {
				prev = &old
				if _, err := decodePlan(old); err != nil {
					// Whatever the stored definition said, the file's
					// declaration is readable: it replaces it. Its
					// directory may or may not be the one the catalog
					// lists, so nothing is deleted; the start-up rebuild
					// makes the catalog what the directory holds.
					s.log.ErrorContext(ctx, "plan: the stored definition is unreadable; replacing it with the config file's declaration and keeping its catalog",
						slog.String("plan", p.Name), slog.String("error", err.Error()))
					if err := s.storePlan(ctx, tx, p, origin, h, old.NextDueAt, now); err != nil {
						return err
					}
					continue
				}
				s.log.InfoContext(ctx, "plan: the config file changed its declaration; applying it", slog.String("plan", p.Name))
			}
			if _, err := s.putPlan(ctx, tx, p, origin, h, prev, now); err != nil {
				return err
			}
		}
		for _, r := range rows {
			if r.Origin == originConfig && !declared[r.Name] {
				if err := q.PlanDelete(ctx, r.Name); err != nil {
					return fmt.Errorf("plans: %w", err)
				}
				if err := q.BackupDeletePlan(ctx, r.Name); err != nil {
					return fmt.Errorf("catalog: %w", err)
				}
				// Its changes so far do not bring it back.
				if err := overrideChanges(ctx, q, r.Name); err != nil {
					return err
				}
				s.log.WarnContext(ctx, "plan: no longer in the config file; dropped (its backups are left on disk)", slog.String("plan", r.Name))
			}
		}
		// Changes this host has not taken yet (a rebuild from a peer
		// replaced plan_changes during its last run) apply on top.
		if err := s.takeChangesBehind(ctx, tx); err != nil {
			return err
		}
		return s.checkDirectories(ctx, q)
	})
}

// checkDirectories refuses two plans sharing a backup directory. A plan
// whose stored definition is unreadable is reported and left out (its
// directory is unknown); it takes no backups until it is set again.
func (s *Service) checkDirectories(ctx context.Context, q *db.Queries) error {
	rows, err := q.PlanList(ctx)
	if err != nil {
		return fmt.Errorf("plans: %w", err)
	}
	dirs := map[string]string{}
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			s.reportUnreadable(ctx, r.Name, err)
			continue
		}
		if other, ok := dirs[p.Directory]; ok {
			return fmt.Errorf("plans %s and %s share the backup directory %s; each plan needs its own (change one with `lifeboat plan set %s --dir DIR`, or in the config file)", other, p.Name, p.Directory, p.Name)
		}
		dirs[p.Directory] = p.Name
	}
	return nil
}

// putPlan stores p's definition, changed at now (the event's time when a
// PlanChanged is applied: never the clock there). When its schedule's
// first interval, its directory or its disabled flag changed, the next
// backup is due one new interval after the last attempt (at once if that
// is past): a changed schedule takes effect at once. dirChanged says the
// plan is new or has a new directory, whose catalog the caller has rebuilt
// once committed.
//
// prev is the stored row of an existing plan. Its definition must be
// readable: an unreadable one is an error, and nothing is changed — above
// all its catalog is not deleted, since whether the directory changed is
// unknown (applyConfig handles that case with storePlan).
func (s *Service) putPlan(ctx context.Context, tx *store.Tx, p Plan, origin, hash string, prev *db.Plan, now time.Time) (dirChanged bool, err error) {
	q := db.New(tx)
	due := sql.NullInt64{}
	dirChanged = prev == nil
	if prev != nil {
		old, err := decodePlan(*prev)
		if err != nil {
			return false, err
		}
		dirChanged = old.Directory != p.Directory
		due = prev.NextDueAt
		if old.Spec().Every() != p.Spec().Every() || old.Disabled != p.Disabled || old.Directory != p.Directory {
			due = sql.NullInt64{}
			if prev.LastAttemptAt.Valid {
				due = sql.NullInt64{Int64: prev.LastAttemptAt.Int64 + p.Spec().Every().Milliseconds(), Valid: true}
			}
		}
		if dirChanged {
			// The old directory's backups are no longer the plan's (they are
			// left on disk); the catalog is rebuilt from the new one. A
			// backup of the old directory still running when this commits
			// is not cataloged (record checks the directory when it
			// commits).
			if err := q.BackupDeletePlan(ctx, p.Name); err != nil {
				return false, fmt.Errorf("catalog: %w", err)
			}
		}
	}
	return dirChanged, s.storePlan(ctx, tx, p, origin, hash, due, now)
}

// storePlan writes p's definition with its next due time, changed at now.
func (s *Service) storePlan(ctx context.Context, tx *store.Tx, p Plan, origin, hash string, due sql.NullInt64, now time.Time) error {
	def, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("plan %s: %w", p.Name, err)
	}
	if err := db.New(tx).PlanPut(ctx, db.PlanPutParams{
		Name: p.Name, Definition: string(def), Origin: origin, ConfigHash: hash, NextDueAt: due, UpdatedAt: now.UnixMilli(),
	}); err != nil {
		return fmt.Errorf("plan %s: %w", p.Name, err)
	}
	tx.AfterCommit(func() {
		s.mu.Lock()
		delete(s.unreadable, p.Name)
		s.mu.Unlock()
	})
	return nil
}

// decodePlan reads a plan row's definition.
func decodePlan(r db.Plan) (Plan, error) {
	var p Plan
	if err := json.Unmarshal([]byte(r.Definition), &p); err != nil {
		return p, fmt.Errorf("plan %s: stored definition unreadable: %w (set it again with `lifeboat plan set %s`, or declare it in the config file)", r.Name, err, r.Name)
	}
	return p, nil
}

// loadPlan reads one plan; ok is false when there is none. An unreadable
// definition is an error.
func (s *Service) loadPlan(ctx context.Context, name string) (Plan, db.Plan, bool, error) {
	r, err := db.New(s.rt.DB.R).PlanGet(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return Plan{}, r, false, nil
	}
	if err != nil {
		return Plan{}, r, false, fmt.Errorf("plan %s: %w", name, err)
	}
	p, err := decodePlan(r)
	return p, r, err == nil, err
}

// reportUnreadable logs, once per plan until it is stored again, that its
// stored definition cannot be read.
func (s *Service) reportUnreadable(ctx context.Context, name string, err error) {
	s.mu.Lock()
	seen := s.unreadable[name]
	s.unreadable[name] = true
	s.mu.Unlock()
	if !seen {
		s.log.ErrorContext(ctx, "plan: skipped: it takes no backups and prunes nothing until it is set again; its catalog is kept",
			slog.String("plan", name), slog.String("error", err.Error()))
	}
}
