package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
)

// payload is what the test fills write: path → content.
var payload = map[string]string{
	"store.db":          "pretend database pages",
	"sub/dir/extra.bin": "\x00\x01\x02",
}

// fill writes payload and reports consistentAt.
func fill(consistentAt time.Time) backup.Fill {
	return func(ctx context.Context, dir string) (backup.Info, error) {
		for p, body := range payload {
			full := filepath.Join(dir, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return backup.Info{}, err
			}
			if err := os.WriteFile(full, []byte(body), 0o640); err != nil {
				return backup.Info{}, err
			}
		}
		return backup.Info{ConsistentAt: consistentAt, LoadCommand: []string{"load", "it"}}, nil
	}
}

func newManifest() backup.Manifest {
	return backup.Manifest{Instance: "wr", Plan: "wr-db", StoreKind: "test", Kind: backup.KindScheduled, LifeboatVersion: "v1.2.3"}
}

// write takes a backup with the test fill and fails t on error.
func write(t *testing.T, dir string, m backup.Manifest) (string, backup.Manifest) {
	t.Helper()
	name, m, err := backup.Write(context.Background(), dir, m, fill(time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return name, m
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestWriteThenVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups") // created by Write
	consistent := time.Now().Add(-time.Second).Round(0)
	m := newManifest()
	name, got, err := backup.Write(context.Background(), dir, m, fill(consistent))
	if err != nil {
		t.Fatal(err)
	}
	if name != backup.FormatName(got.TakenAt.Local()) {
		t.Errorf("name %s is not taken_at %v in local time", name, got.TakenAt)
	}
	wantFiles := []backup.File{
		{Path: "store.db", Size: int64(len(payload["store.db"])), SHA256: sum(payload["store.db"]), Mode: 0o640},
		{Path: "sub/dir/extra.bin", Size: 3, SHA256: sum(payload["sub/dir/extra.bin"]), Mode: 0o640},
	}
	if !reflect.DeepEqual(got.Files, wantFiles) {
		t.Errorf("files %+v, want %+v", got.Files, wantFiles)
	}
	// The payload's sha256 is sha256sum's listing of the files, hashed.
	listing := fmt.Sprintf("%s  store.db\n%s  sub/dir/extra.bin\n", wantFiles[0].SHA256, wantFiles[1].SHA256)
	if got.SHA256 != sum(listing) || got.TotalBytes != wantFiles[0].Size+3 {
		t.Errorf("sha256 %s total %d, want %s and %d", got.SHA256, got.TotalBytes, sum(listing), wantFiles[0].Size+3)
	}
	if got.FormatVersion != backup.FormatVersion || !got.ConsistentAt.Equal(consistent) || got.Instance != "wr" ||
		got.Plan != "wr-db" || got.Kind != backup.KindScheduled || got.LifeboatVersion != "v1.2.3" ||
		!reflect.DeepEqual(got.LoadCommand, []string{"load", "it"}) {
		t.Errorf("manifest %+v does not carry what was asked", got)
	}

	vm, err := backup.Verify(context.Background(), dir, name)
	if err != nil {
		t.Fatal(err)
	}
	if vm.SHA256 != got.SHA256 || !vm.TakenAt.Equal(got.TakenAt) || !reflect.DeepEqual(vm.Files, got.Files) {
		t.Errorf("Verify read %+v, Write returned %+v", vm, got)
	}
	// MANIFEST.json is plain JSON with the documented keys.
	b, err := os.ReadFile(filepath.Join(dir, name, backup.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format_version", "instance", "plan", "store_kind", "kind", "files", "total_bytes", "sha256", "taken_at", "consistent_at", "lifeboat_version", "load_command"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("MANIFEST.json has no %q", k)
		}
	}
	if !strings.Contains(string(b), `"mode": "0640"`) {
		t.Errorf("modes are not written in octal:\n%s", b)
	}
}

// TestWriteTakesTheStoresSums: a sum the store reports in Info.Sums is
// recorded as it is, without Write reading the file again (here a wrong
// one, to see it is not recomputed), and Verify, which reads everything,
// finds what such a wrong sum would hide.
func TestWriteTakesTheStoresSums(t *testing.T) {
	dir := t.TempDir()
	wrong := sum("not the content")
	name, m, err := backup.Write(context.Background(), dir, newManifest(), func(ctx context.Context, d string) (backup.Info, error) {
		info, err := fill(time.Now())(ctx, d)
		info.Sums = map[string]string{"store.db": wrong}
		return info, err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		want := sum(payload[f.Path])
		if f.Path == "store.db" {
			want = wrong
		}
		if f.SHA256 != want || f.Size != int64(len(payload[f.Path])) {
			t.Errorf("%s: sha256 %s size %d, want %s and %d", f.Path, f.SHA256, f.Size, want, len(payload[f.Path]))
		}
	}
	if _, err := backup.Verify(context.Background(), dir, name); err == nil || !strings.Contains(err.Error(), "store.db") {
		t.Errorf("Verify of a backup whose store reported a wrong sum: %v, want store.db named", err)
	}
	got, _, err := backup.HashFile(context.Background(), filepath.Join(dir, name, "sub/dir/extra.bin"))
	if err != nil || got != sum(payload["sub/dir/extra.bin"]) {
		t.Errorf("HashFile = %s, %v; want the content's sha256", got, err)
	}
}

func TestVerifyFindsDamage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, backupDir string)
		want   string
	}{
		{"flipped byte", func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, "store.db"), "pretend database pageS")
		}, "store.db: sha256"},
		{"truncated", func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, "store.db"), "pretend")
		}, "store.db: size 7, manifest says 22"},
		{"missing file", func(t *testing.T, d string) {
			remove(t, filepath.Join(d, "sub/dir/extra.bin"))
		}, "sub/dir/extra.bin: missing"},
		{"extra file", func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, "sub/stray"), "x")
		}, "sub/stray: not in the manifest"},
		{"file became a directory", func(t *testing.T, d string) {
			remove(t, filepath.Join(d, "store.db"))
			if err := os.Mkdir(filepath.Join(d, "store.db"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "store.db: is a directory, not a regular file"},
		{"no manifest", func(t *testing.T, d string) {
			remove(t, filepath.Join(d, backup.ManifestName))
		}, "MANIFEST.json is missing"},
		{"garbled manifest", func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, backup.ManifestName), `{"format_version": 1, "files": [`)
		}, "MANIFEST.json: unexpected end of JSON input"},
		{"edited file list", func(t *testing.T, d string) {
			editManifest(t, d, func(m map[string]any) { m["total_bytes"] = 1 })
		}, "total_bytes 1, but the files add up to 25"},
		{"newer format", func(t *testing.T, d string) {
			editManifest(t, d, func(m map[string]any) { m["format_version"] = 99 })
		}, "format_version 99 is newer than this lifeboat reads (1): upgrade lifeboat"},
		{"escaping path", func(t *testing.T, d string) {
			editManifest(t, d, func(m map[string]any) { m["files"].([]any)[0].(map[string]any)["path"] = "../store.db" })
		}, `file "../store.db": not a payload path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			name, _ := write(t, dir, newManifest())
			tc.damage(t, filepath.Join(dir, name))
			_, err := backup.Verify(context.Background(), dir, name)
			if !errors.Is(err, backup.ErrCorrupt) {
				t.Fatalf("Verify of a damaged backup: %v, want ErrCorrupt", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), name) {
				t.Fatalf("Verify error %q does not name the backup and say %q", err, tc.want)
			}
		})
	}
}

func TestVerifyRefusesOtherNames(t *testing.T) {
	dir := t.TempDir()
	if _, err := backup.Verify(context.Background(), dir, "../etc"); !errors.Is(err, backup.ErrNotName) {
		t.Fatalf("Verify of a name not of the backup form: %v", err)
	}
	if _, err := backup.Verify(context.Background(), dir, "backup-2015-12-23_12-19-17-0500"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Verify of a missing backup: %v, want not-exist", err)
	}
}

func TestWriteFailuresLeaveNothing(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		fill backup.Fill
		want string
	}{
		{"fill fails", func(ctx context.Context, dir string) (backup.Info, error) {
			writeFile(t, filepath.Join(dir, "half"), "half a payload")
			return backup.Info{}, boom
		}, "disk on fire"},
		{"no consistent_at", func(ctx context.Context, dir string) (backup.Info, error) {
			writeFile(t, filepath.Join(dir, "x"), "x")
			return backup.Info{}, nil
		}, "no consistent_at"},
		{"empty payload", func(ctx context.Context, dir string) (backup.Info, error) {
			return backup.Info{ConsistentAt: time.Now()}, nil
		}, "wrote no payload"},
		{"payload named like the manifest", func(ctx context.Context, dir string) (backup.Info, error) {
			writeFile(t, filepath.Join(dir, backup.ManifestName), "{}")
			return backup.Info{ConsistentAt: time.Now()}, nil
		}, "reserved for the manifest"},
		{"symlink in payload", func(ctx context.Context, dir string) (backup.Info, error) {
			writeFile(t, filepath.Join(dir, "x"), "x")
			return backup.Info{ConsistentAt: time.Now()}, os.Symlink("x", filepath.Join(dir, "link"))
		}, "link is a symlink"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			_, _, err := backup.Write(context.Background(), dir, newManifest(), tc.fill)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write: %v, want an error saying %q", err, tc.want)
			}
			assertOnly(t, dir)
		})
	}
}

func TestWriteRefusesIncompleteManifest(t *testing.T) {
	for _, tc := range []struct {
		edit func(*backup.Manifest)
		want string
	}{
		{func(m *backup.Manifest) { m.Instance = "" }, "instance is empty"},
		{func(m *backup.Manifest) { m.Plan = "" }, "plan is empty"},
		{func(m *backup.Manifest) { m.StoreKind = "" }, "store_kind is empty"},
		{func(m *backup.Manifest) { m.Kind = "hourly" }, `kind "hourly"`},
	} {
		dir := t.TempDir()
		m := newManifest()
		tc.edit(&m)
		if _, _, err := backup.Write(context.Background(), dir, m, fill(time.Now())); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Write: %v, want %q", err, tc.want)
		}
		assertOnly(t, dir)
	}
}

func TestUnwritableBackupDirectory(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "a-file")
	writeFile(t, file, "not a directory")
	dir := filepath.Join(file, "backups")
	_, _, err := backup.Write(context.Background(), dir, newManifest(), fill(time.Now()))
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("Write under a file: %v, want an error naming %s", err, dir)
	}

	if os.Geteuid() == 0 {
		t.Log("running as root: permissions do not stop root, skipping the read-only directory case")
		return
	}
	ro := filepath.Join(base, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	_, _, err = backup.Write(context.Background(), ro, newManifest(), fill(time.Now()))
	if err == nil || !strings.Contains(err.Error(), "permission denied") || !strings.Contains(err.Error(), "writable") {
		t.Fatalf("Write into a read-only directory: %v", err)
	}
}

func TestCancelledDuringFill(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err := backup.Write(ctx, dir, newManifest(), func(ctx context.Context, d string) (backup.Info, error) {
		info, err := fill(time.Now())(ctx, d)
		cancel() // the store kind finished just as the caller gave up
		return info, err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write cancelled during fill: %v", err)
	}
	assertOnly(t, dir)
}

// TestSameSecond: backups taken in one second, even at once, get
// consecutive seconds' names, never a suffix and never each other's.
func TestSameSecond(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2015, 12, 23, 12, 19, 17, 0, time.Local)
	const n = 8
	names := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			m := newManifest()
			m.TakenAt = at.Add(time.Duration(i) * time.Millisecond)
			name, _, err := backup.Write(context.Background(), dir, m, fill(time.Now()))
			if err != nil {
				t.Error(err)
			}
			names[i] = name
		})
	}
	wg.Wait()
	entries, err := backup.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("%d backups listed, want %d", len(entries), n)
	}
	for i, e := range entries {
		if want := backup.FormatName(at.Add(time.Duration(i) * time.Second)); e.Name != want {
			t.Errorf("backup %d is %s, want %s", i, e.Name, want)
		}
		if _, err := backup.Verify(context.Background(), dir, e.Name); err != nil {
			t.Error(err)
		}
	}
}

// TestListAndCleanTempLeaveOthersAlone: only names of the exact form are
// listed, only temporary directories are cleaned, nothing else is touched.
func TestListAndCleanTempLeaveOthersAlone(t *testing.T) {
	dir := t.TempDir()
	est := time.FixedZone("", -5*3600)
	// Out of order, and in two zones: List sorts by the instant.
	late, _ := write(t, dir, withTakenAt(time.Date(2015, 12, 23, 12, 0, 0, 0, est)))
	early, _ := write(t, dir, withTakenAt(time.Date(2015, 12, 23, 16, 30, 0, 0, time.UTC)))
	others := []string{
		"notes.txt", "backup-foo", "backup-2015-12-23_12-19-17-0500.partial", "backups.tar",
		"backup-2015-12-23_12-19-17-05:00",
	}
	for _, o := range others {
		if strings.HasSuffix(o, ".txt") || strings.HasSuffix(o, ".tar") {
			writeFile(t, filepath.Join(dir, o), "operator's")
		} else if err := os.Mkdir(filepath.Join(dir, o), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A file with a backup's name is not a backup.
	asFile := "backup-2016-01-01_00-00-00+0000"
	writeFile(t, filepath.Join(dir, asFile), "a file")
	others = append(others, asFile)
	for _, tmp := range []string{".tmp-backup-123", ".tmp-backup-456"} {
		writeFile(t, filepath.Join(dir, tmp, "store.db"), "half")
	}

	entries, err := backup.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name)
	}
	if want := []string{early, late}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %v, want %v (oldest first)", got, want)
	}
	if !entries[0].Time.Before(entries[1].Time) {
		t.Errorf("entries not in time order: %v", entries)
	}

	removed, err := backup.CleanTemp(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{".tmp-backup-123", ".tmp-backup-456"}; !reflect.DeepEqual(removed, want) {
		t.Errorf("CleanTemp removed %v, want %v", removed, want)
	}
	assertOnly(t, dir, append(others, early, late)...)
}

func withTakenAt(at time.Time) backup.Manifest {
	m := newManifest()
	m.TakenAt = at
	return m
}

// assertOnly fails t unless dir holds exactly names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, de := range des {
		got = append(got, de.Name())
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("%s is in the backup directory, unexpectedly", g)
		}
		delete(want, g)
	}
	for n := range want {
		t.Errorf("%s is gone from the backup directory", n)
	}
}

func writeFile(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

// editManifest rewrites a backup's MANIFEST.json through edit.
func editManifest(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, backup.ManifestName)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p, string(b))
}
