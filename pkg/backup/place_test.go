package backup_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
)

// TestPlaceCopiesOnlyWhatMatches: a copy becomes visible under the
// source's name only when it matches the manifest; otherwise nothing but
// a temporary name is left, and CleanTempPlaced (not CleanTemp, which a
// plan's owner runs in the same directory) removes it.
func TestPlaceCopiesOnlyWhatMatches(t *testing.T) {
	ctx := context.Background()
	src, dst := t.TempDir(), t.TempDir()
	name, _ := write(t, src, newManifest())
	manifest, err := os.ReadFile(filepath.Join(src, name, backup.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	copyFill := func(alter func(dir string)) func(context.Context, string) (map[string]string, error) {
		return func(ctx context.Context, dir string) (map[string]string, error) {
			if _, err := fill(time.Now())(ctx, dir); err != nil {
				return nil, err
			}
			if alter != nil {
				alter(dir)
			}
			return nil, nil
		}
	}
	for _, tc := range []struct {
		name  string
		alter func(dir string)
		want  string
	}{
		{"altered", func(dir string) {
			os.WriteFile(filepath.Join(dir, "store.db"), []byte("pretend database pageZ"), 0o640)
		}, "store.db: sha256"},
		{"missing", func(dir string) { os.Remove(filepath.Join(dir, "store.db")) }, "store.db: missing"},
		{"extra", func(dir string) { os.WriteFile(filepath.Join(dir, "more"), nil, 0o640) }, "more: not in the manifest"},
		{"mode", func(dir string) { os.Chmod(filepath.Join(dir, "store.db"), 0o600) }, "store.db: mode 0600"},
	} {
		err := backup.Place(ctx, dst, name, manifest, copyFill(tc.alter))
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCorrupt saying %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(dst, name)); err == nil {
			t.Fatalf("%s: the copy is visible", tc.name)
		}
	}
	if err := backup.Place(ctx, dst, name, manifest, copyFill(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Verify(ctx, dst, name); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dst, name, backup.ManifestName))
	if string(got) != string(manifest) {
		t.Error("the copy's manifest is not the source's byte for byte")
	}
	if err := backup.Place(ctx, dst, name, manifest, copyFill(nil)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("placing a held name again: %v, want fs.ErrExist", err)
	}
	if err := backup.Place(ctx, dst, name, []byte("{}"), copyFill(nil)); !errors.Is(err, backup.ErrCorrupt) {
		t.Errorf("a manifest that is not one: %v, want ErrCorrupt", err)
	}
	// A crash mid-copy leaves a temporary name that only CleanTempPlaced removes.
	if err := os.Mkdir(filepath.Join(dst, ".tmp-copy-crashed"), 0o750); err != nil {
		t.Fatal(err)
	}
	if removed, _ := backup.CleanTemp(ctx, dst); len(removed) != 0 {
		t.Errorf("CleanTemp removed a copy's temporary directory %v", removed)
	}
	if removed, err := backup.CleanTempPlaced(dst); err != nil || len(removed) != 1 {
		t.Errorf("CleanTempPlaced removed %v (%v), want the crashed copy", removed, err)
	}
}
