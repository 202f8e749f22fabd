package backupscheduler

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
)

// TestCheckManifestHashFails: a backup whose manifest verifies but cannot
// then be hashed is cataloged invalid with the reason, never valid with an
// empty sha256 (which BackupTaken would announce); when the hash works the
// row carries it.
func TestCheckManifestHashFails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	name, _, err := backup.Write(ctx, dir, backup.Manifest{Instance: "i", Plan: "p", StoreKind: "files", Kind: backup.KindManual},
		func(_ context.Context, payload string) (backup.Info, error) {
			return backup.Info{ConsistentAt: time.Now()}, os.WriteFile(filepath.Join(payload, "data"), []byte("payload"), 0o644)
		})
	if err != nil {
		t.Fatal(err)
	}
	at, err := backup.ParseName(name)
	if err != nil {
		t.Fatal(err)
	}
	p := Plan{Name: "p", Directory: dir}
	e := backup.Entry{Name: name, Time: at}
	now := time.Now()

	put, m := check(ctx, p, e, now)
	want, werr := fileSHA256(filepath.Join(dir, name, backup.ManifestName))
	if put.State != stateValid || werr != nil || put.Sha256 != want || len(want) != 64 || m.Plan != "p" {
		t.Fatalf("a good backup: state %q (%s), sha256 %q, want %q (%v)", put.State, put.Problem, put.Sha256, want, werr)
	}

	failing := func(string) (string, error) { return "", errors.New("read MANIFEST.json: input/output error") }
	put, m = checkWith(ctx, p, e, now, failing)
	if put.State != stateInvalid || put.Sha256 != "" || !strings.Contains(put.Problem, "input/output error") || !strings.Contains(put.Problem, backup.ManifestName) {
		t.Errorf("manifest hash failed: state %q, problem %q, sha256 %q; want invalid with the error", put.State, put.Problem, put.Sha256)
	}
	if m.Plan != "p" || put.Kind != string(backup.KindManual) {
		t.Errorf("what the manifest says is lost: %+v, %+v", m, put)
	}

	// A backup already invalid keeps the reason its verification gave.
	if err := os.WriteFile(filepath.Join(dir, name, "data"), []byte("PAYLOAD"), 0o644); err != nil {
		t.Fatal(err)
	}
	put, _ = checkWith(ctx, p, e, now, failing)
	if put.State != stateInvalid || !strings.Contains(put.Problem, "data") || strings.Contains(put.Problem, "could not be hashed") {
		t.Errorf("corrupt payload and failing hash: state %q, problem %q; want the payload's problem", put.State, put.Problem)
	}
}
