package files_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/storekind"
	"lifeboat.dev/pkg/storekind/files"
	"lifeboat.dev/pkg/storekind/storekindtest"
)

// seedExclude is the seed's static-content sync: everything but data/,
// logs/ and license.dat.
var seedExclude = []string{"data/", "logs/", "license.dat"}

// seedTree builds a CycleCloud-like installation under root.
func seedTree(t *testing.T, root string) {
	t.Helper()
	mtime := time.Date(2015, 12, 23, 12, 19, 17, 0, time.UTC)
	for _, f := range []struct {
		path string
		mode fs.FileMode
		body string
	}{
		{"README.txt", 0o644, "read me\n"},
		{"config/app.yaml", 0o640, "port: 8080\n"},
		{"bin/run.sh", 0o755, "#!/bin/sh\nexec app\n"},
		{"secret/token", 0o600, "s3cr3t"},
		{"lib/data", 0o644, "a file named data is not the data/ directory"},
		{"plugins/a/b/c/deep.txt", 0o444, strings.Repeat("deep ", 10000)},
		{"data/backups/backup-2015-12-23_12-19-17-0500/store.db", 0o644, "excluded"},
		{"logs/server.log", 0o644, "excluded"},
		{"plugins/logs/x.log", 0o644, "excluded: logs/ matches at any depth"},
		{"license.dat", 0o600, "excluded"},
	} {
		p := filepath.Join(root, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct {
		path string
		mode fs.FileMode
	}{{"empty", 0o750}, {"secret", 0o700}, {"plugins/a", 0o555}} {
		p := filepath.Join(root, d.path)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("config/app.yaml", filepath.Join(root, "current-config")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/lifeboat-does-not-exist", filepath.Join(root, "bin/abs-link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "bin/fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chmodAll(root) })
}

// chmodAll makes a tree writable so that t.TempDir can remove it.
func chmodAll(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
}

// entry is what a tree holds at one path.
type entry struct {
	Mode  fs.FileMode
	Body  string // a file's content or a symlink's target
	MTime int64  // a file's modification time, in seconds
}

// snapshot maps every path under root to its entry.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Body, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			e.Body, e.MTime = string(b), fi.ModTime().Unix()
		}
		out[filepath.ToSlash(rel)] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// without returns s minus the paths that are, or lie under, any of drop.
func without(s map[string]entry, drop ...string) map[string]entry {
	out := map[string]entry{}
	for p, e := range s {
		keep := true
		for _, d := range drop {
			if p == d || strings.HasPrefix(p, d+"/") {
				keep = false
			}
		}
		if keep {
			out[p] = e
		}
	}
	return out
}

// assertSame fails t unless two snapshots are equal, naming the paths that
// differ.
func assertSame(t *testing.T, got, want map[string]entry) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	var diffs []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, p+": missing")
		} else if g != w {
			diffs = append(diffs, fmt.Sprintf("%s: got %v %.40q, want %v %.40q", p, g.Mode, g.Body, w.Mode, w.Body))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, p+": not expected")
		}
	}
	sort.Strings(diffs)
	t.Fatalf("trees differ:\n%s", strings.Join(diffs, "\n"))
}

func TestConformance(t *testing.T) {
	storekindtest.Run(t, func(t *testing.T) storekindtest.Store {
		root := filepath.Join(t.TempDir(), "cycle_server")
		seedTree(t, root)
		notStore := []string{"data", "logs", "plugins/logs", "license.dat", "bin/fifo"}
		want := without(snapshot(t, root), notStore...)
		k, err := files.New(files.Options{Root: root, Exclude: seedExclude})
		if err != nil {
			t.Fatal(err)
		}
		return storekindtest.Store{
			Kind: k,
			Path: root,
			Change: func(t *testing.T) {
				if err := os.WriteFile(filepath.Join(root, "README.txt"), []byte("changed"), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(filepath.Join(root, "config/app.yaml")); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(root, "new.txt"), []byte("new"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
			Check: func(t *testing.T, target string) {
				t.Helper()
				t.Cleanup(func() { chmodAll(target) })
				// The live store also holds what is not part of it, which
				// Load keeps (TestLoadKeepsWhatIsNotTheStore).
				assertSame(t, without(snapshot(t, target), notStore...), want)
			},
		}
	})
}

func TestInclude(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cycle_server")
	seedTree(t, root)
	for _, tc := range []struct {
		name             string
		include, exclude []string
		want             []string
	}{
		{"directory and glob", []string{"config/", "*.sh"}, nil, []string{".", "bin", "bin/run.sh", "config", "config/app.yaml"}},
		{"anchored subtree", []string{"data/backups/"}, nil, []string{".", "data", "data/backups", "data/backups/backup-2015-12-23_12-19-17-0500", "data/backups/backup-2015-12-23_12-19-17-0500/store.db"}},
		{"exclude wins", []string{"plugins/"}, []string{"logs/", "deep.txt"}, []string{".", "plugins", "plugins/a", "plugins/a/b", "plugins/a/b/c"}},
		{"anchored file", []string{"/README.txt"}, nil, []string{".", "README.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := files.New(files.Options{Root: root, Include: tc.include, Exclude: tc.exclude})
			if err != nil {
				t.Fatal(err)
			}
			payload := t.TempDir()
			if _, err := k.Dump(context.Background(), payload); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "out")
			if err := k.Load(context.Background(), payload, target); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { chmodAll(target) })
			var got []string
			for p := range snapshot(t, target) {
				got = append(got, p)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("include %q exclude %q archived %q, want %q", tc.include, tc.exclude, got, tc.want)
			}
		})
	}
}

func TestBadPatternIsNamed(t *testing.T) {
	for _, opts := range []files.Options{
		{Root: "/x", Exclude: []string{"ok", "[unclosed"}},
		{Root: "/x", Include: []string{"/"}},
	} {
		_, err := files.New(opts)
		if err == nil {
			t.Fatalf("New(%+v) accepted a bad pattern", opts)
		}
		if bad := append(opts.Include, opts.Exclude...); !strings.Contains(err.Error(), fmt.Sprintf("%q", bad[len(bad)-1])) {
			t.Errorf("error %q does not name the bad pattern", err)
		}
	}
	if _, err := files.New(files.Options{}); err == nil {
		t.Error("New accepted an empty root")
	}
}

func TestMissingRootIsNamed(t *testing.T) {
	root := filepath.Join(t.TempDir(), "nope")
	k, err := files.New(files.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, _, err = storekind.Backup(context.Background(), k, dir, backup.Manifest{Instance: "i", Plan: "p", Kind: backup.KindManual})
	if err == nil || !strings.Contains(err.Error(), root) {
		t.Fatalf("backup of a missing root: %v, want an error naming %s", err, root)
	}
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Fatalf("a failed backup left %v", des)
	}
}

// TestLoadRefusesEscapes feeds Load archives whose entries would land
// outside the target; each is refused, nothing is written outside, and the
// existing target is untouched.
func TestLoadRefusesEscapes(t *testing.T) {
	type ent struct {
		name, link string
		typ        byte
	}
	for _, tc := range []struct {
		name    string
		entries []ent
	}{
		{"dot-dot", []ent{{name: "../lifeboat-escape-probe", typ: tar.TypeReg}}},
		{"dot-dot inside", []ent{{name: "a/../../lifeboat-escape-probe", typ: tar.TypeReg}}},
		{"absolute", []ent{{name: "/tmp/lifeboat-escape-probe", typ: tar.TypeReg}}},
		{"through a symlink", []ent{{name: "link", link: "..", typ: tar.TypeSymlink}, {name: "link/lifeboat-escape-probe", typ: tar.TypeReg}}},
		{"through an absolute symlink", []ent{{name: "link", link: "/tmp", typ: tar.TypeSymlink}, {name: "link/lifeboat-escape-probe", typ: tar.TypeReg}}},
		{"over a symlink", []ent{{name: "link", link: "../lifeboat-escape-probe", typ: tar.TypeSymlink}, {name: "link", typ: tar.TypeReg}}},
		{"hard link", []ent{{name: "hard", link: "/etc/passwd", typ: tar.TypeLink}}},
		{"device", []ent{{name: "dev", typ: tar.TypeChar}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			target := filepath.Join(base, "store", "tree")
			if err := os.MkdirAll(target, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(target, "keep"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			zw, _ := zstd.NewWriter(&buf)
			tw := tar.NewWriter(zw)
			for _, e := range tc.entries {
				hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o644, Size: 0}
				if e.typ == tar.TypeReg {
					hdr.Size = 5
				}
				if err := tw.WriteHeader(hdr); err != nil {
					t.Fatal(err)
				}
				if e.typ == tar.TypeReg {
					tw.Write([]byte("pwned"))
				}
			}
			tw.Close()
			zw.Close()
			payload := t.TempDir()
			if err := os.WriteFile(filepath.Join(payload, files.PayloadName), buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			k, _ := files.New(files.Options{Root: target})
			err := k.Load(context.Background(), payload, target)
			if err == nil {
				t.Fatal("Load accepted an archive that escapes the target")
			}
			t.Log(err)
			if b, err := os.ReadFile(filepath.Join(target, "keep")); err != nil || string(b) != "old" {
				t.Fatalf("a refused Load changed the target: %q, %v", b, err)
			}
			for _, p := range []string{filepath.Join(base, "lifeboat-escape-probe"), filepath.Join(base, "store", "lifeboat-escape-probe"), "/tmp/lifeboat-escape-probe"} {
				if _, err := os.Lstat(p); err == nil {
					t.Fatalf("Load wrote %s, outside the target", p)
				}
			}
			// Nothing left beside the target either.
			if des, _ := os.ReadDir(filepath.Dir(target)); len(des) != 1 {
				t.Fatalf("a refused Load left %d entries beside the target", len(des))
			}
		})
	}
}

// TestLoadKeepsWhatIsNotTheStore restores the static content of an
// installation over the live one: the store's files return to the backup's
// state, while data/, logs/ and license.dat (excluded) keep their current
// content, hard-linked into the new tree rather than copied.
func TestLoadKeepsWhatIsNotTheStore(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cycle_server")
	seedTree(t, root)
	k, err := files.New(files.Options{Root: root, Exclude: seedExclude})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	if _, err := k.Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	notStore := []string{"data", "logs", "plugins/logs", "license.dat", "bin/fifo"}
	store := without(snapshot(t, root), notStore...)

	// After the backup, both the store and what is not the store change.
	db := filepath.Join(root, "data/backups/backup-2015-12-23_12-19-17-0500/store.db")
	if err := os.WriteFile(db, []byte("newer data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "config/app.yaml"), []byte("port: 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "logs/2026"), 0o700); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	rest := snapshot(t, root)
	for p := range store {
		delete(rest, p)
	}
	delete(rest, "bin/fifo") // a FIFO holds no data and is not kept

	if err := k.Load(context.Background(), payload, root); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, root)
	assertSame(t, without(after, notStore...), store)
	kept := map[string]entry{}
	for p, e := range after {
		if _, ok := store[p]; !ok {
			kept[p] = e
		}
	}
	assertSame(t, kept, rest)
	now, err := os.Stat(db)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, now) {
		t.Error("data/ was copied, not kept in place (hard-linked)")
	}
	if des, _ := os.ReadDir(filepath.Dir(root)); len(des) != 1 {
		t.Errorf("Load left %d entries beside the target, want only the target", len(des))
	}
}

// TestLoadIncludeKeepsTheRest: with Include, everything not included is
// kept at the target.
func TestLoadIncludeKeepsTheRest(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cycle_server")
	seedTree(t, root)
	k, err := files.New(files.Options{Root: root, Include: []string{"config/"}})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	if _, err := k.Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	want := without(snapshot(t, root), "bin/fifo")
	if err := os.WriteFile(filepath.Join(root, "config/app.yaml"), []byte("port: 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "config/extra.yaml"), []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), payload, root); err != nil {
		t.Fatal(err)
	}
	assertSame(t, snapshot(t, root), want)
}

// TestLoadConflictLeavesTarget: when the backup holds a file where the
// target has a directory the store does not own, Load fails and changes
// nothing rather than drop that directory.
func TestLoadConflictLeavesTarget(t *testing.T) {
	root := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "logs"), []byte("a file, so logs/ does not exclude it"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, err := files.New(files.Options{Root: root, Exclude: []string{"logs/"}})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	if _, err := k.Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "logs")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "logs/today.log"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	err = k.Load(context.Background(), payload, root)
	if err == nil || !strings.Contains(err.Error(), "logs") {
		t.Fatalf("Load over a conflicting directory: %v, want an error naming logs", err)
	}
	t.Log(err)
	assertSame(t, snapshot(t, root), before)
	if des, _ := os.ReadDir(filepath.Dir(root)); len(des) != 1 {
		t.Errorf("a failed Load left %d entries beside the target", len(des))
	}
}

// TestSymlinkedRoot: a root that is a symlink is backed up and restored
// where it points, and stays a symlink.
func TestSymlinkedRoot(t *testing.T) {
	base := t.TempDir()
	dest := filepath.Join(base, "app-1.2")
	seedTree(t, dest)
	link := filepath.Join(base, "app")
	if err := os.Symlink("app-1.2", link); err != nil {
		t.Fatal(err)
	}
	k, err := files.New(files.Options{Root: link, Exclude: seedExclude})
	if err != nil {
		t.Fatal(err)
	}
	payload := t.TempDir()
	if _, err := k.Dump(context.Background(), payload); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, dest)
	if err := os.WriteFile(filepath.Join(dest, "README.txt"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(context.Background(), payload, link); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the root symlink was replaced: %v, %v", fi, err)
	}
	assertSame(t, without(snapshot(t, dest), "bin/fifo"), without(want, "bin/fifo"))
}
