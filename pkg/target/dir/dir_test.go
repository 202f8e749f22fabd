package dir_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
	"lifeboat.dev/pkg/target/targettest"
	"lifeboat.dev/pkg/testtool"
)

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "standby", "backups")
	targettest.Run(t, targettest.Kind{
		// As the receiving end of a remote target uses it: chunks
		// staged by Put (staged hides CommitFrom, which Send would use).
		Open:          func(t *testing.T) target.Target { return staged{dir.New(path, "db")} },
		OpenOtherPlan: func(t *testing.T) target.Target { return staged{dir.New(path, "static")} },
		Check: func(t *testing.T, srcDir, name string) {
			t.Helper()
			// Reading only the target's disk, as a restore would.
			m, err := backup.Verify(context.Background(), path, name)
			if err != nil {
				t.Fatal(err)
			}
			// Byte-identical to the source, manifest included.
			for _, rel := range append([]string{backup.ManifestName}, paths(m)...) {
				a, _ := os.ReadFile(filepath.Join(srcDir, name, rel))
				b, err := os.ReadFile(filepath.Join(path, name, rel))
				if err != nil || !bytes.Equal(a, b) {
					t.Fatalf("%s/%s differs from the source's (%v)", name, rel, err)
				}
				sa, _ := os.Stat(filepath.Join(srcDir, name, rel))
				sb, _ := os.Stat(filepath.Join(path, name, rel))
				if sa.Mode() != sb.Mode() {
					t.Errorf("%s/%s: mode %v, the source's %v", name, rel, sb.Mode(), sa.Mode())
				}
			}
		},
		Corrupt: func(t *testing.T, h chunk.Hash) {
			p := filepath.Join(path, dir.StateDir, "chunks", h.String())
			if err := os.WriteFile(p, []byte("bit rot"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
	})
	// Nothing staged is left once every transfer committed.
	left, _ := os.ReadDir(filepath.Join(path, dir.StateDir, "chunks"))
	if len(left) != 0 {
		t.Errorf("%d chunks left staged after every transfer committed", len(left))
	}
}

// staged is a dir target seen as a target.Target only.
type staged struct{ target.Target }

// TestLocalCopy: a dir target on this host copies from the source backup
// itself (target.Local): a first copy is each file whole, byte-identical;
// the next after 1% of pages rewritten copies about 1% from the source
// and the rest from its base; a full backup copies everything; a paced
// copy is paced; a copy cancelled half-way leaves nothing listed.
func TestLocalCopy(t *testing.T) {
	ctx := context.Background()
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "usb", "db")
	const pages = 2048
	db := make([]byte, pages*4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range db {
		db[i] = byte(rng.Uint32())
	}
	copy(db, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(db[16:], 4096)
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	take := func() string {
		at = at.Add(time.Hour)
		name, _, err := backup.Write(ctx, src, backup.Manifest{Instance: "app", Plan: "db", StoreKind: "sqlite", Kind: backup.KindHash, TakenAt: at},
			func(ctx context.Context, dir string) (backup.Info, error) {
				return backup.Info{ConsistentAt: at}, os.WriteFile(filepath.Join(dir, "store.db"), db, 0o600)
			})
		if err != nil {
			t.Fatal(err)
		}
		return name
	}
	same := func(name string) {
		t.Helper()
		if _, err := backup.Verify(ctx, dst, name); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(filepath.Join(src, name, "store.db"))
		b, _ := os.ReadFile(filepath.Join(dst, name, "store.db"))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs from the source's", name)
		}
	}
	tg := dir.New(dst, "db")
	first := take()
	st, err := target.Send(ctx, tg, src, first, "", target.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesSent != st.BytesTotal || st.ChunksTotal != 1 {
		t.Errorf("first copy %+v: want the file whole", st)
	}
	same(first)

	for range pages / 100 {
		p := 1 + rng.IntN(pages-1)
		for i := p * 4096; i < (p+1)*4096; i++ {
			db[i] = byte(rng.Uint32())
		}
	}
	second := take()
	st, err = target.Send(ctx, tg, src, second, first, target.SendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pct := 100 * float64(st.BytesSent) / float64(st.BytesTotal); pct > 1.5 || pct == 0 {
		t.Errorf("1%% of pages rewritten: %d of %d bytes from the source (%.2f%%), want about 1%%", st.BytesSent, st.BytesTotal, pct)
	}
	same(second)

	third := take()
	paced := 0
	st, err = target.Send(ctx, tg, src, third, second, target.SendOptions{Full: true, Pace: func(ctx context.Context, n int) error {
		paced += n
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesSent != st.BytesTotal || int64(paced) != st.BytesTotal {
		t.Errorf("full copy %+v, %d bytes paced: want everything copied and paced", st, paced)
	}
	same(third)

	fourth := take()
	cctx, cancel := context.WithCancel(ctx)
	_, err = target.Send(cctx, tg, src, fourth, "", target.SendOptions{Pace: func(ctx context.Context, n int) error {
		cancel() // the process stops half-way
		return ctx.Err()
	}})
	if err == nil {
		t.Fatal("a cancelled copy succeeded")
	}
	held, _ := tg.List(ctx)
	if len(held) != 3 {
		t.Fatalf("after a cancelled copy the target lists %v", held)
	}
}

func paths(m backup.Manifest) []string {
	var out []string
	for _, f := range m.Files {
		out = append(out, f.Path)
	}
	return out
}

// TestFullDisk: a target whose disk fills up fails the transfer saying so,
// staged or copied, keeps no partial backup, and takes the backup once
// there is room.
func TestFullDisk(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt).CombinedOutput(); err != nil {
		testtool.Missing(t, fmt.Sprintf("mounting a small tmpfs to fill needs root (mount: %v: %s)", err, out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	ctx := context.Background()
	src := t.TempDir()
	payload := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{3}).Read(payload)
	name, _, err := backup.Write(ctx, src, backup.Manifest{Instance: "app", Plan: "db", StoreKind: "files", Kind: backup.KindHash, TakenAt: time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)},
		func(ctx context.Context, dir string) (backup.Info, error) {
			return backup.Info{ConsistentAt: time.Now()}, os.WriteFile(filepath.Join(dir, "data.bin"), payload, 0o600)
		})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(mnt, "db")
	for _, tc := range []struct {
		kind string
		tg   target.Target
	}{{"staged", staged{dir.New(path, "db")}}, {"copied", dir.New(path, "db")}} {
		_, err := target.Send(ctx, tc.tg, src, name, "", target.SendOptions{})
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "disk") {
			t.Fatalf("%s onto a full disk: %v; want ENOSPC, saying the disk is full", tc.kind, err)
		}
		t.Logf("%s: %v", tc.kind, err)
		if held, err := tc.tg.List(ctx); err != nil || len(held) != 0 {
			t.Fatalf("%s: after a full disk the target lists %v (%v)", tc.kind, held, err)
		}
	}
	if out, err := exec.Command("mount", "-o", "remount,size=16m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	if _, err := target.Send(ctx, dir.New(path, "db"), src, name, "", target.SendOptions{}); err != nil {
		t.Fatalf("with room again: %v", err)
	}
	if _, err := backup.Verify(ctx, path, name); err != nil {
		t.Fatal(err)
	}
}
