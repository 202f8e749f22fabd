package files_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/storekind/files"
)

// TestSmallChangeShipsSmall is why the archive is framed per chunk: with 1%
// of a tree's files rewritten, the frames of the new archive that the old
// one lacks (what sync sends) are a few percent of it: each changed file
// plus the chunk it shares with a neighbour. The archive compressed as one
// stream had 68% new content-defined chunks here (restic issue #5545).
func TestSmallChangeShipsSmall(t *testing.T) {
	root := filepath.Join(t.TempDir(), "tree")
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 400
	write := func(i int) {
		p := filepath.Join(root, fmt.Sprintf("d%02d", i%20), fmt.Sprintf("f%03d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Text-like content that compresses but does not repeat.
		var b bytes.Buffer
		for b.Len() < 16<<10 {
			fmt.Fprintf(&b, "line %d of file %d: %x\n", b.Len(), i, rng.Uint64())
		}
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		write(i)
	}
	k, err := files.New(files.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	dump := func() []chunk.Ref {
		dir := t.TempDir()
		if _, err := k.Dump(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(dir, files.PayloadName))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		refs, err := chunk.List(f, chunk.ZstdFrames)
		if err != nil {
			t.Fatal(err)
		}
		return refs
	}
	before := dump()
	for _, i := range rng.Perm(n)[:n/100] {
		write(i)
	}
	after := dump()

	have := map[chunk.Hash]bool{}
	for _, r := range before {
		have[r.Hash] = true
	}
	var total, changed int64
	for _, r := range after {
		total += int64(r.Length)
		if !have[r.Hash] {
			changed += int64(r.Length)
		}
	}
	pct := 100 * float64(changed) / float64(total)
	t.Logf("1%% of %d files rewritten: %d of %d archive bytes in new chunks (%.2f%%)", n, changed, total, pct)
	if pct > 4 {
		t.Errorf("%.2f%% of the archive is new after a 1%% change; want at most 4%%", pct)
	}
}
