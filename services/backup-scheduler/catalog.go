package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// RebuildResult is what a catalog rebuild found in a plan's directory.
type RebuildResult struct {
	Plan      string   `json:"plan"`
	Dir       string   `json:"dir"`
	Total     int      `json:"total"`   // backups in the directory now
	Added     int      `json:"added"`   // found on disk, not in the catalog (copied in by hand)
	Removed   int      `json:"removed"` // in the catalog, gone from disk (deleted by hand)
	Invalid   int      `json:"invalid"` // do not verify
	Verified  int      `json:"verified"`
	Announced int      `json:"announced"`         // found on disk and valid: BackupTaken emitted
	Cleaned   []string `json:"cleaned,omitempty"` // temporary directories of interrupted writes, removed
	Completed int      `json:"pruned"`            // interrupted prunes finished
}

// rebuildCatalog makes the plan's catalog what its directory holds (the
// directory is the truth): it removes what interrupted writes and prunes
// left, adds the backups copied in by hand (verified in full), drops the
// ones deleted by hand, and checks the known ones — their manifest
// unchanged and their files of the listed sizes — or, with full, verifies
// every file's SHA-256. A backup that does not verify is marked invalid and
// never offered for restore. A valid backup the catalog did not know is
// announced with BackupTaken in the same transaction, so that sync ships it
// and restore can pick it: one copied in by hand, or one whose process died
// between its rename and its record (the announcement would otherwise be
// lost); on the host that backs the plan up only (tenure), not on an
// instance's standby, whose copies sync announced. The caller holds the plan's slot.
func (s *Service) rebuildCatalog(ctx context.Context, p Plan, full bool) (RebuildResult, error) {
	res := RebuildResult{Plan: p.Name, Dir: p.Directory}
	if err := s.finishPruning(ctx, p); err != nil {
		return res, err
	}
	var entries []backup.Entry
	if _, err := os.Stat(p.Directory); err == nil {
		if res.Cleaned, err = backup.CleanTemp(ctx, p.Directory); err != nil {
			return res, err
		}
		if entries, err = backup.List(p.Directory); err != nil {
			return res, err
		}
	} else if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return res, fmt.Errorf("catalog: %w", err)
	}
	rows, err := db.New(s.rt.DB.R).BackupsOfPlan(ctx, p.Name)
	if err != nil {
		return res, fmt.Errorf("catalog: %w", err)
	}
	known := map[string]db.Backup{}
	for _, r := range rows {
		known[r.Name] = r
	}
	// Only the host that takes the plan's backups announces what it finds:
	// on an instance's standby they are the copies sync received, which
	// its SyncCompleted announced (as BackupTaken of the standby, sync of
	// a standby would ship them back, undoing the active's pruning).
	_, announces := s.tenure(p)
	onDisk := map[string]bool{}
	var puts []db.BackupPutParams
	var announce []result
	var dels []string
	now := time.Now()
	for _, e := range entries {
		onDisk[e.Name] = true
		r, ok := known[e.Name]
		switch {
		case !ok:
			res.Added++
		case r.State == statePruning:
			continue // its removal failed; the next pass retries it
		}
		if ok && r.State == stateValid && !full && quickCheck(p.Directory, e.Name, r) == nil {
			continue
		}
		put, m := check(ctx, p, e, now)
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		puts = append(puts, put)
		if !ok && put.State == stateValid && announces {
			announce = append(announce, result{kind: events.BackupKind(m.Kind), name: e.Name, manifest: m, manifestSum: put.Sha256, at: now})
		}
	}
	for _, r := range rows {
		if !onDisk[r.Name] {
			dels = append(dels, r.Name)
			res.Removed++
		}
	}
	err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		for _, n := range dels {
			if err := q.BackupDelete(ctx, db.BackupDeleteParams{Plan: p.Name, Name: n}); err != nil {
				return err
			}
		}
		for _, put := range puts {
			if err := q.BackupPut(ctx, put); err != nil {
				return err
			}
		}
		for _, r := range announce {
			if _, err := tx.Emit(ctx, takenEvent(p, r, s.host, "")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("catalog: %w", err)
	}
	after, err := db.New(s.rt.DB.R).BackupsOfPlan(ctx, p.Name)
	if err != nil {
		return res, fmt.Errorf("catalog: %w", err)
	}
	res.Total = len(after)
	for _, r := range after {
		if r.State == stateInvalid {
			res.Invalid++
		}
	}
	res.Verified, res.Announced = len(puts), len(announce)
	return res, nil
}

// quickCheck says whether a known backup still looks as it did when it was
// verified: the same manifest (by its SHA-256), and every payload file of
// the size the manifest says. It reads no payload.
func quickCheck(dir, name string, r db.Backup) error {
	sum, err := fileSHA256(filepath.Join(dir, name, backup.ManifestName))
	if err != nil {
		return err
	}
	if sum != r.Sha256 {
		return errors.New("manifest changed")
	}
	m, err := backup.ReadManifest(dir, name)
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		fi, err := os.Stat(filepath.Join(dir, name, filepath.FromSlash(f.Path)))
		if err != nil {
			return err
		}
		if fi.Size() != f.Size {
			return fmt.Errorf("%s changed size", f.Path)
		}
	}
	return nil
}

// check verifies backup e of plan p in full and returns its catalog row and
// its manifest.
func check(ctx context.Context, p Plan, e backup.Entry, now time.Time) (db.BackupPutParams, backup.Manifest) {
	return checkWith(ctx, p, e, now, fileSHA256)
}

// checkWith is check with the manifest's SHA-256 taken by hashManifest.
//
// A manifest that verifies but cannot then be hashed (the backup changed
// under the check, or its disk is failing) makes the backup invalid, with
// the error as the reason, rather than failing the whole rebuild: the
// operator sees which backup and why in `lifeboat backup list`, the other
// backups of the plan are still cataloged, and the next rebuild checks an
// invalid backup in full again, so a passing fault clears itself. A valid
// row with an empty sum would be worse than either: BackupTaken would
// announce it with no sha256 for sync and restore to check against.
func checkWith(ctx context.Context, p Plan, e backup.Entry, now time.Time, hashManifest func(string) (string, error)) (db.BackupPutParams, backup.Manifest) {
	put := db.BackupPutParams{
		Plan: p.Name, Name: e.Name, Dir: p.Directory, NameTime: e.Time.Unix(),
		State: stateValid, CheckedAt: now.UnixMilli(), VerifiedAt: sql.NullInt64{Int64: now.UnixMilli(), Valid: true},
	}
	m, err := backup.Verify(ctx, p.Directory, e.Name)
	if err != nil {
		put.State, put.Problem = stateInvalid, err.Error()
		// What the manifest says, when it can be read, still helps the
		// operator who looks at an invalid backup.
		m, _ = backup.ReadManifest(p.Directory, e.Name)
	}
	put.Instance, put.StoreKind, put.Kind, put.Bytes = m.Instance, m.StoreKind, string(m.Kind), m.TotalBytes
	if !m.TakenAt.IsZero() {
		put.TakenAt = m.TakenAt.UnixMilli()
	}
	if !m.ConsistentAt.IsZero() {
		put.ConsistentAt = m.ConsistentAt.UnixMilli()
	}
	sum, err := hashManifest(filepath.Join(p.Directory, e.Name, backup.ManifestName))
	switch {
	case err == nil:
		put.Sha256 = sum
	case put.State == stateValid:
		put.State, put.Problem = stateInvalid, fmt.Sprintf("%s verified but could not be hashed: %v (check the disk; the next rebuild checks it again)", backup.ManifestName, err)
	}
	return put, m
}
