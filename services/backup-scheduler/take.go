package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/command"
	"lifeboat.dev/pkg/storekind/files"
	"lifeboat.dev/pkg/storekind/sqlite"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// result is the outcome of one backup attempt.
type result struct {
	kind        events.BackupKind
	name        string          // the backup's name, when taken
	manifest    backup.Manifest // when taken
	manifestSum string          // SHA-256 of MANIFEST.json, when taken
	took        time.Duration
	step        string // the step that failed
	err         error  // why it failed
	at          time.Time
}

// failed is an attempt that failed at step, now.
func (s *Service) failed(kind events.BackupKind, step string, err error) result {
	return result{kind: kind, step: step, err: err, at: s.now()}
}

// kindOf builds the plan's store kind.
func (s *Service) kindOf(p Plan) (storekind.Kind, error) {
	switch p.Store.Kind {
	case StoreSQLite:
		return sqlite.New(p.Store.Path), nil
	case StoreFiles:
		return files.New(files.Options{Root: p.Store.Path, Include: p.Store.Include, Exclude: p.Store.Exclude})
	case StoreCommand:
		o := command.NewOptions()
		o.Dump, o.Load, o.Env = p.Store.Dump, p.Store.Load, p.Store.Env
		if p.Store.Timeout > 0 {
			o.Timeout = time.Duration(p.Store.Timeout)
		}
		return command.New(o)
	case StoreSQLiteSet:
		return selfKind{dataDir: p.Store.Path}, nil
	}
	return nil, fmt.Errorf("store kind %q is not one of sqlite, files, command", p.Store.Kind)
}

func hookOf(name string, h *Hook) *storekind.Hook {
	if h == nil {
		return nil
	}
	return &storekind.Hook{Name: name, Command: h.Command, Timeout: time.Duration(h.Timeout)}
}

// takeBackup takes one backup of p with pkg/backup's Write (a temporary
// directory, fsynced, renamed), running the plan's hooks around the store's
// dump; started (the service's clock) is its taken_at and names it. On
// failure it names the step and says what to do; nothing is left under a
// final name. epoch is the lease epoch the manifest records (0 for a plan
// without a lease).
func (s *Service) takeBackup(ctx context.Context, p Plan, kind events.BackupKind, started time.Time, epoch uint64) result {
	t0 := time.Now() // measures how long it took, whatever the service's clock says
	k, err := s.kindOf(p)
	if err != nil {
		return s.failed(kind, "store", err)
	}
	pre, post := hookOf("pre", p.Hooks.Pre), hookOf("post", p.Hooks.Post)
	step := "directory"
	// The hooks are run here rather than by storekind.WithHooks so that the
	// failure names its step; the behaviour is the same: no dump when pre
	// fails, post always once pre succeeded, a failing post fails the
	// backup.
	fill := func(ctx context.Context, dir string) (backup.Info, error) {
		if pre != nil {
			step = "pre-hook"
			if err := pre.Run(ctx); err != nil {
				return backup.Info{}, fmt.Errorf("%w (the dump was not started)", err)
			}
		}
		step = "copy"
		info, err := k.Dump(ctx, dir)
		if err != nil && strings.Contains(err.Error(), "integrity_check") {
			step = "integrity_check"
		}
		if post != nil {
			if perr := post.Run(context.WithoutCancel(ctx)); perr != nil {
				if err == nil {
					step = "post-hook"
				}
				err = errors.Join(err, fmt.Errorf("%w (the store may still be frozen)", perr))
			}
		}
		if err != nil {
			return backup.Info{}, err
		}
		step = "write"
		return info, nil
	}
	m := backup.Manifest{
		Instance: p.Instance, Plan: p.Name, StoreKind: k.Name(), Kind: backup.Kind(kind), Epoch: epoch,
		TakenAt: started, LifeboatVersion: s.version,
	}
	name, m, err := backup.Write(ctx, p.Directory, m, fill)
	if err != nil {
		r := s.failed(kind, step, explain(err, p))
		r.took = time.Since(t0)
		return r
	}
	// The backup is written: a shutdown does not cut short reading its
	// manifest back.
	sum, _, err := backup.HashFile(context.WithoutCancel(ctx), filepath.Join(p.Directory, name, backup.ManifestName))
	if err != nil {
		// The backup is complete; only its announcement lacks the sum. The
		// catalog rebuild sees it.
		return s.failed(kind, "manifest", fmt.Errorf("backup %s was written but its manifest cannot be read back: %w", name, err))
	}
	return result{kind: kind, name: name, manifest: m, manifestSum: sum, took: time.Since(t0), at: s.now()}
}

// explain adds what an operator can do to the errors whose cause the
// message alone does not make plain.
func explain(err error, p Plan) error {
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(msg, "disk is full") || strings.Contains(msg, "no space left"):
		return fmt.Errorf("%w (the disk holding %s or its temporary files is full: free space, or move the plan with `lifeboat plan set %s --dir DIR`; the plan retries at its next slot)", err, p.Directory, p.Name)
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%w (give the lifeboat process access, or change the plan with `lifeboat plan set %s`; the plan retries at its next slot)", err, p.Name)
	case errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w (the plan's directory %s, or a parent of it, is not a directory: fix the path with `lifeboat plan set %s --dir DIR`)", err, p.Directory, p.Name)
	}
	return err
}

// fileSHA256 is backup.HashFile's sum, for the catalog's callers.
func fileSHA256(p string) (string, error) {
	sum, _, err := backup.HashFile(context.Background(), p)
	return sum, err
}

// record writes an attempt's outcome in tx, the transaction that removes
// its job: the catalog row and the plan's last backup or last error, and
// BackupTaken or BackupFailed in the outbox (with requestID when it
// answers a take). It runs after the backup is complete on disk, so the
// event never announces a backup that is not there. A backup whose plan
// was dropped, or moved to another directory, while it was taken is
// announced (it exists, in the directory it names) but not cataloged: the
// catalog is the plan's current directory's.
func (s *Service) record(ctx context.Context, tx *store.Tx, p Plan, r result, requestID string) error {
	q := db.New(tx)
	if r.err != nil {
		// No row is updated when the plan does not exist.
		if err := q.PlanFailed(ctx, db.PlanFailedParams{LastError: r.err.Error(), LastErrorAt: sql.NullInt64{Int64: r.at.UnixMilli(), Valid: true}, Name: p.Name}); err != nil {
			return err
		}
		if _, err := tx.Emit(ctx, &events.BackupFailed{
			Plan: p.Name, Instance: p.Instance, Kind: r.kind, Host: s.host,
			Error: r.err.Error(), Step: r.step, FailedAt: r.at.UTC(), RequestID: requestID,
		}); err != nil {
			return err
		}
		// The operator watching `lifeboat up` sees each outcome as well.
		msg := "backup failed; the plan retries at its next slot"
		if requestID != "" {
			msg = "requested backup failed"
		}
		tx.AfterCommit(func() {
			s.log.WarnContext(ctx, msg, slog.String("plan", p.Name), slog.String("kind", string(r.kind)),
				slog.String("step", r.step), slog.String("error", r.err.Error()), slog.String("request_id", requestID))
		})
		return nil
	}
	cataloged, err := s.stillIn(ctx, q, p)
	if err != nil {
		return err
	}
	if cataloged {
		m := r.manifest
		nameTime, _ := backup.ParseName(r.name)
		if err := q.BackupPut(ctx, db.BackupPutParams{
			Plan: p.Name, Name: r.name, Dir: p.Directory, NameTime: nameTime.Unix(),
			Instance: m.Instance, StoreKind: m.StoreKind, Kind: string(m.Kind), Bytes: m.TotalBytes, Sha256: r.manifestSum,
			TakenAt: m.TakenAt.UnixMilli(), ConsistentAt: m.ConsistentAt.UnixMilli(),
			State: stateValid, CheckedAt: r.at.UnixMilli(), VerifiedAt: sql.NullInt64{Int64: r.at.UnixMilli(), Valid: true},
		}); err != nil {
			return fmt.Errorf("catalog: %w", err)
		}
		if err := q.PlanSucceeded(ctx, db.PlanSucceededParams{LastBackup: r.name, LastSuccessAt: sql.NullInt64{Int64: r.at.UnixMilli(), Valid: true}, Name: p.Name}); err != nil {
			return err
		}
	}
	if _, err := tx.Emit(ctx, takenEvent(p, r, s.host, requestID)); err != nil {
		return err
	}
	tx.AfterCommit(func() {
		if !cataloged {
			s.log.WarnContext(ctx, "backup taken, but its plan was dropped or moved to another directory meanwhile: announced, not cataloged",
				slog.String("plan", p.Name), slog.String("backup", r.name), slog.String("dir", p.Directory))
			return
		}
		s.log.InfoContext(ctx, "backup taken", slog.String("plan", p.Name), slog.String("backup", r.name), slog.String("kind", string(r.kind)),
			slog.Int64("bytes", r.manifest.TotalBytes), slog.Duration("took", r.took), slog.String("dir", p.Directory))
	})
	return nil
}

// stillIn says whether plan p still exists with the directory p names.
func (s *Service) stillIn(ctx context.Context, q *db.Queries, p Plan) (bool, error) {
	row, err := q.PlanGet(ctx, p.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("plan %s: %w", p.Name, err)
	}
	cur, err := decodePlan(row)
	if err != nil {
		return false, nil // reported by the scheduler; the catalog rebuild decides
	}
	return cur.Directory == p.Directory, nil
}

// takenEvent is the BackupTaken of a backup just written: everything sync
// needs to ship and check it, and restore to choose it.
func takenEvent(p Plan, r result, host, requestID string) *events.BackupTaken {
	m := r.manifest
	ev := &events.BackupTaken{
		Plan: p.Name, Instance: m.Instance, Backup: r.name, Kind: r.kind, Store: m.StoreKind,
		Host: host, Dir: p.Directory, Targets: p.Targets, Bytes: m.TotalBytes, SHA256: r.manifestSum,
		FormatVersion: m.FormatVersion, TakenAt: m.TakenAt.UTC(), ConsistentAt: m.ConsistentAt.UTC(),
		Duration: events.MillisOf(r.took), RequestID: requestID, Epoch: m.Epoch,
	}
	for _, f := range m.Files {
		ev.Files = append(ev.Files, events.BackupFile{Path: f.Path, Bytes: f.Size, SHA256: f.SHA256})
	}
	return ev
}
