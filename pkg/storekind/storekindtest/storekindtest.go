// Package storekindtest is the conformance suite every store kind passes:
// dump a seeded store into a real backup, verify it, load it back, and find
// the same contents.
package storekindtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
)

// Store is a kind under test with a store seeded for it.
type Store struct {
	// Kind dumps the seeded store.
	Kind storekind.Kind
	// Path is the live store; the suite loads a backup back into it.
	Path string
	// Change alters the live store so that it no longer holds what was
	// seeded.
	Change func(t *testing.T)
	// Check fails t unless the store at target holds exactly what was
	// seeded.
	Check func(t *testing.T, target string)
}

// Run runs the suite; seed returns a freshly seeded store for each case.
func Run(t *testing.T, seed func(t *testing.T) Store) {
	t.Run("DumpVerifyLoad", func(t *testing.T) {
		s := seed(t)
		dir := t.TempDir()
		before := time.Now()
		name, m := take(t, s.Kind, dir, backup.Manifest{})
		after := time.Now()
		if !backup.IsName(name) {
			t.Fatalf("backup name %q is not of the backup form", name)
		}
		if m.StoreKind != s.Kind.Name() || m.Instance != "inst" || m.Plan != "plan" || m.Kind != backup.KindManual {
			t.Errorf("manifest %+v does not record the kind %q, instance, plan and kind asked for", m, s.Kind.Name())
		}
		if m.ConsistentAt.Before(before) || m.ConsistentAt.After(after) {
			t.Errorf("consistent_at %v is outside the dump [%v, %v]", m.ConsistentAt, before, after)
		}
		if m.TotalBytes <= 0 || len(m.Files) == 0 || len(m.SHA256) != 64 {
			t.Errorf("manifest has no payload: %d bytes, %d files, sha256 %q", m.TotalBytes, len(m.Files), m.SHA256)
		}
		vm, err := backup.Verify(context.Background(), dir, name)
		if err != nil {
			t.Fatal(err)
		}
		if vm.SHA256 != m.SHA256 {
			t.Errorf("Verify read sha256 %s, Write wrote %s", vm.SHA256, m.SHA256)
		}
		target := filepath.Join(t.TempDir(), "restored")
		if err := s.Kind.Load(context.Background(), filepath.Join(dir, name), target); err != nil {
			t.Fatal(err)
		}
		s.Check(t, target)
	})

	t.Run("LoadReplacesChangedStore", func(t *testing.T) {
		s := seed(t)
		dir := t.TempDir()
		name, _ := take(t, s.Kind, dir, backup.Manifest{})
		s.Change(t)
		if err := s.Kind.Load(context.Background(), filepath.Join(dir, name), s.Path); err != nil {
			t.Fatal(err)
		}
		s.Check(t, s.Path)
		// And a second backup of the restored store loads to the same.
		name2, _ := take(t, s.Kind, dir, backup.Manifest{})
		target := filepath.Join(t.TempDir(), "again")
		if err := s.Kind.Load(context.Background(), filepath.Join(dir, name2), target); err != nil {
			t.Fatal(err)
		}
		s.Check(t, target)
	})

	t.Run("SameSecondDoesNotCollide", func(t *testing.T) {
		s := seed(t)
		dir := t.TempDir()
		at := time.Date(2015, 12, 23, 12, 19, 17, 0, time.Local)
		n1, _ := take(t, s.Kind, dir, backup.Manifest{TakenAt: at})
		n2, _ := take(t, s.Kind, dir, backup.Manifest{TakenAt: at.Add(300 * time.Millisecond)})
		if n1 != backup.FormatName(at) || n2 != backup.FormatName(at.Add(time.Second)) {
			t.Fatalf("two backups in one second are named %s and %s, want %s and the next second", n1, n2, backup.FormatName(at))
		}
		for _, n := range []string{n1, n2} {
			if _, err := backup.Verify(context.Background(), dir, n); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("CancelledLeavesNothing", func(t *testing.T) {
		s := seed(t)
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := storekind.Backup(ctx, s.Kind, dir, manifest(backup.Manifest{}))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("a backup with a cancelled context returned %v, want context.Canceled", err)
		}
		assertEmpty(t, dir)
	})

	t.Run("FailedLoadLeavesStore", func(t *testing.T) {
		s := seed(t)
		empty := t.TempDir()
		if err := s.Kind.Load(context.Background(), empty, s.Path); err == nil {
			t.Fatal("Load of an empty payload succeeded")
		}
		s.Check(t, s.Path)
	})
}

// take backs s up into dir with m's fields over the suite's defaults.
func take(t *testing.T, k storekind.Kind, dir string, m backup.Manifest) (string, backup.Manifest) {
	t.Helper()
	name, m, err := storekind.Backup(context.Background(), k, dir, manifest(m))
	if err != nil {
		t.Fatal(err)
	}
	return name, m
}

func manifest(m backup.Manifest) backup.Manifest {
	m.Instance, m.Plan, m.Kind, m.LifeboatVersion = "inst", "plan", backup.KindManual, "test"
	return m
}

// assertEmpty fails t unless dir holds nothing at all.
func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		t.Errorf("%s was left in the backup directory", de.Name())
	}
}
