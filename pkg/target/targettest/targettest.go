// Package targettest is the conformance test every target kind passes:
// first and incremental transfers that send only what the target lacks,
// resumption, and a target that never lists a backup it cannot restore.
package targettest

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
)

// Kind is a target under test.
type Kind struct {
	// Open returns the target; called again, it returns a new handle on
	// the same target (a restarted process).
	Open func(t *testing.T) target.Target
	// Check verifies that the target holds backup name as the source
	// backup in srcDir holds it, reading only the target's storage.
	Check func(t *testing.T, srcDir, name string)
	// Corrupt alters a staged chunk in the target's storage.
	Corrupt func(t *testing.T, h chunk.Hash)
	// OpenOtherPlan returns a handle on the same storage for another
	// plan, which the target must refuse (target.ErrRefused).
	OpenOtherPlan func(t *testing.T) target.Target
}

const pageSize = 4096

// db writes a fake SQLite database of n pages: the header's magic and
// page size, then pseudo-random pages.
func db(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n*pageSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, "SQLite format 3\x00")
	binary.BigEndian.PutUint16(b[16:], pageSize)
	return b
}

// rewrite changes pct percent of the pages (never the first).
func rewrite(b []byte, pct int, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	pages := len(b) / pageSize
	for range pages * pct / 100 {
		p := 1 + r.IntN(pages-1)
		for i := p * pageSize; i < (p+1)*pageSize; i++ {
			b[i] = byte(r.Uint32())
		}
	}
}

// take writes a backup of content into dir, one second after the last.
func take(t *testing.T, dir string, at time.Time, content []byte) string {
	t.Helper()
	name, _, err := backup.Write(context.Background(), dir, backup.Manifest{Instance: "app", Plan: "app", StoreKind: "sqlite", Kind: backup.KindHash, TakenAt: at},
		func(ctx context.Context, payloadDir string) (backup.Info, error) {
			if err := os.WriteFile(filepath.Join(payloadDir, "store.db"), content, 0o600); err != nil {
				return backup.Info{}, err
			}
			if err := os.MkdirAll(filepath.Join(payloadDir, "extra"), 0o755); err != nil {
				return backup.Info{}, err
			}
			return backup.Info{ConsistentAt: at}, os.WriteFile(filepath.Join(payloadDir, "extra", "notes.txt"), []byte("static\n"), 0o644)
		})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func names(t *testing.T, tg target.Target) []string {
	t.Helper()
	held, err := tg.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, h := range held {
		out = append(out, h.Name)
	}
	return out
}

// Run runs the conformance test.
func Run(t *testing.T, k Kind) {
	ctx := context.Background()
	src := t.TempDir()
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.Local)
	content := db(2000, 1)
	first := take(t, src, at, content)

	t.Run("FirstCopySendsEverythingAndVerifies", func(t *testing.T) {
		tg := k.Open(t)
		if n := names(t, tg); len(n) != 0 {
			t.Fatalf("a new target lists %v", n)
		}
		st, err := target.Send(ctx, tg, src, first, "", target.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// With no base, 256 KiB chunks (target.FirstCopy): 32 of the
		// 2000 pages, and the small file.
		if st.BytesTotal != int64(len(content))+7 || st.ChunksSent != st.ChunksTotal || st.ChunksTotal != 33 {
			t.Errorf("first copy stats %+v; want every chunk sent (32 of the database's 2000 pages and a small file)", st)
		}
		if n := names(t, tg); len(n) != 1 || n[0] != first {
			t.Fatalf("target lists %v, want [%s]", n, first)
		}
		held, _ := tg.List(ctx)
		m, _ := os.ReadFile(filepath.Join(src, first, backup.ManifestName))
		if sum := sha256.Sum256(m); held[0].ManifestSHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("held %+v: its manifest SHA-256 is not the source's", held[0])
		}
		k.Check(t, src, first)
		// Sent again (an answer lost): nothing new, no error.
		if _, err := target.Send(ctx, tg, src, first, "", target.SendOptions{}); err != nil {
			t.Fatalf("sending a held backup again: %v", err)
		}
	})

	rewrite(content, 1, 3)
	second := take(t, src, at.Add(time.Hour), content)
	t.Run("IncrementalSendsOnlyChangedPages", func(t *testing.T) {
		tg := k.Open(t)
		st, err := target.Send(ctx, tg, src, second, first, target.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pct := 100 * float64(st.BytesSent) / float64(st.BytesTotal); pct > 1.5 || st.BytesSent == 0 {
			t.Errorf("1%% of pages rewritten: sent %d of %d bytes (%.2f%%), want about 1%%", st.BytesSent, st.BytesTotal, pct)
		}
		k.Check(t, src, second)
	})

	rewrite(content, 5, 4)
	third := take(t, src, at.Add(2*time.Hour), content)
	t.Run("ResumeSendsOnlyWhatIsMissing", func(t *testing.T) {
		tg := k.Open(t)
		r, locs, err := target.Build(ctx, src, third, second)
		if err != nil {
			t.Fatal(err)
		}
		hashes := r.Hashes()
		half := hashes[:len(hashes)/2]
		var put []target.Chunk
		for _, h := range half {
			put = append(put, target.Chunk{Hash: h, Data: read(t, src, third, locs[h])})
		}
		if err := tg.Put(ctx, put); err != nil {
			t.Fatal(err)
		}
		// The sender dies here; a new one asks again.
		tg = k.Open(t)
		missing, err := tg.Missing(ctx, hashes)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) != len(hashes)-len(half) {
			t.Fatalf("after half was put, %d of %d chunks missing; want %d", len(missing), len(hashes), len(hashes)-len(half))
		}
		st, err := target.Send(ctx, tg, src, third, second, target.SendOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.ChunksSent != int64(len(missing)) {
			t.Errorf("resumed transfer sent %d chunks, want the %d missing", st.ChunksSent, len(missing))
		}
		k.Check(t, src, third)
	})

	rewrite(content, 1, 5)
	fourth := take(t, src, at.Add(3*time.Hour), content)
	t.Run("NeverListsWhatItCannotRestore", func(t *testing.T) {
		tg := k.Open(t)
		r, locs, err := target.Build(ctx, src, fourth, third)
		if err != nil {
			t.Fatal(err)
		}
		hashes := r.Hashes()
		// A chunk never put.
		if err := tg.Commit(ctx, r); !errors.Is(err, target.ErrIncomplete) {
			t.Fatalf("commit with no chunk put: %v, want ErrIncomplete", err)
		}
		// An altered chunk is refused at Put.
		bad := read(t, src, fourth, locs[hashes[0]])
		bad[0] ^= 1
		if err := tg.Put(ctx, []target.Chunk{{Hash: hashes[0], Data: bad}}); err == nil {
			t.Fatal("an altered chunk was staged")
		}
		// A staged chunk corrupted on the target's storage: the commit
		// fails and the chunk is missing again, to be re-sent.
		var put []target.Chunk
		for _, h := range hashes {
			put = append(put, target.Chunk{Hash: h, Data: read(t, src, fourth, locs[h])})
		}
		if err := tg.Put(ctx, put); err != nil {
			t.Fatal(err)
		}
		k.Corrupt(t, hashes[1])
		if err := tg.Commit(ctx, r); !errors.Is(err, target.ErrIncomplete) {
			t.Fatalf("commit with a corrupt staged chunk: %v, want ErrIncomplete", err)
		}
		if m, _ := tg.Missing(ctx, hashes); len(m) != 1 || m[0] != hashes[1] {
			t.Fatalf("after the corrupt chunk, missing %v; want it alone", m)
		}
		// A manifest the files do not match.
		wrong := r
		wrong.Manifest = mustRead(t, filepath.Join(src, third, backup.ManifestName))
		if err := tg.Put(ctx, put[1:2]); err != nil {
			t.Fatal(err)
		}
		if err := tg.Commit(ctx, wrong); !errors.Is(err, backup.ErrCorrupt) {
			t.Fatalf("commit of files that do not match the manifest: %v, want backup.ErrCorrupt", err)
		}
		for _, n := range names(t, tg) {
			if n == fourth {
				t.Fatalf("the target lists %s after failed commits", fourth)
			}
		}
		// The next attempt heals it.
		if _, err := target.Send(ctx, tg, src, fourth, third, target.SendOptions{}); err != nil {
			t.Fatal(err)
		}
		k.Check(t, src, fourth)
	})

	t.Run("AnotherBackupUnderAHeldNameIsRefused", func(t *testing.T) {
		tg := k.Open(t)
		r, _, err := target.Build(ctx, src, fourth, third)
		if err != nil {
			t.Fatal(err)
		}
		r.Name = first
		if err := tg.Commit(ctx, r); err == nil {
			t.Fatalf("commit of another backup under %s was accepted", first)
		}
		k.Check(t, src, first)
	})

	rewrite(content, 1, 6)
	fifth := take(t, src, at.Add(4*time.Hour), content)
	t.Run("FullSendsEveryChunk", func(t *testing.T) {
		tg := k.Open(t)
		// Half the chunks staged already (an earlier attempt): a full
		// backup sends them again all the same.
		r, locs, err := target.Build(ctx, src, fifth, "")
		if err != nil {
			t.Fatal(err)
		}
		hashes := r.Hashes()
		for _, h := range hashes[:len(hashes)/2] { // a Put each: under a NATS message's 1 MiB
			if err := tg.Put(ctx, []target.Chunk{{Hash: h, Data: read(t, src, fifth, locs[h])}}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := target.Send(ctx, tg, src, fifth, "", target.SendOptions{Full: true})
		if err != nil {
			t.Fatal(err)
		}
		if st.ChunksSent != st.ChunksTotal || st.BytesSent < st.BytesTotal {
			t.Errorf("full backup stats %+v; want every chunk and byte sent", st)
		}
		k.Check(t, src, fifth)
	})

	if k.OpenOtherPlan != nil {
		t.Run("AnotherPlanIsRefused", func(t *testing.T) {
			other := k.OpenOtherPlan(t)
			if _, err := target.Send(ctx, other, src, fifth, "", target.SendOptions{}); !errors.Is(err, target.ErrRefused) {
				t.Fatalf("another plan's send into the same storage: %v, want target.ErrRefused", err)
			}
			if err := other.Prune(ctx, second); !errors.Is(err, target.ErrRefused) {
				t.Fatalf("another plan's prune: %v, want target.ErrRefused", err)
			}
			k.Check(t, src, second)
		})
	}

	t.Run("Prune", func(t *testing.T) {
		tg := k.Open(t)
		for range 2 {
			if err := tg.Prune(ctx, first); err != nil {
				t.Fatal(err)
			}
		}
		if n := names(t, tg); len(n) != 4 || n[0] != second {
			t.Fatalf("after pruning %s the target lists %v", first, n)
		}
		if err := tg.Prune(ctx, "../etc"); err == nil {
			t.Fatal("pruning a name that is not a backup's was accepted")
		}
	})
}

func read(t *testing.T, dir, name string, loc target.Loc) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, name, filepath.FromSlash(loc.Path)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, loc.Length)
	if _, err := f.ReadAt(b, loc.Offset); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
