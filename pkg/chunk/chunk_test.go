package chunk

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/restic/chunker"
)

// payload is n pseudo-random bytes, the same for the same seed.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestChunksCoverThePayloadExactly(t *testing.T) {
	for _, p := range []Params{Pages(4096, 1), Pages(4096, 2), Content} {
		for _, n := range []int{0, 1, 4095, 4096, 3*4096 + 17, 1 << 20} {
			data := payload(uint64(n), n)
			var joined bytes.Buffer
			var off int64
			err := Split(bytes.NewReader(data), p, func(ref Ref, b []byte) error {
				if ref.Offset != off || ref.Length != len(b) || ref.Hash != sha256.Sum256(b) {
					t.Errorf("%s n=%d: ref %+v at offset %d does not describe its %d bytes", p.Algorithm, n, ref, off, len(b))
				}
				if p.Algorithm == AlgorithmFixed && ref.Length != p.Normal && ref.Offset+int64(ref.Length) != int64(n) {
					t.Errorf("%s n=%d: a chunk of %d bytes before the end", p.Algorithm, n, ref.Length)
				}
				if ref.Length > p.Max {
					t.Errorf("%s n=%d: chunk of %d bytes, max %d", p.Algorithm, n, ref.Length, p.Max)
				}
				off += int64(len(b))
				joined.Write(b)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(joined.Bytes(), data) {
				t.Errorf("%s n=%d: the chunks joined are not the payload", p.Algorithm, n)
			}
		}
	}
}

func TestBadParamsAreRefusedSayingWhy(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		want string
	}{
		{Params{Algorithm: "rabin", Min: 1, Normal: 1, Max: 1}, `algorithm "rabin"`},
		{Params{Algorithm: AlgorithmFastCDC, Min: 10, Normal: 5, Max: 20}, "min <= normal <= max"},
		{Pages(4096, 3), "power of two"},
		{Params{Algorithm: AlgorithmFixed, Min: 4096, Normal: 4096, Max: 8192}, "one power of two"},
	} {
		err := Split(strings.NewReader("x"), tc.p, func(Ref, []byte) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.p, err, tc.want)
		}
	}
}

// changed is the share of b's bytes in chunks that a does not have: what a
// sync of b to a target holding a sends.
func changed(t testing.TB, a, b []byte, cut func([]byte) []Ref) float64 {
	have := map[Hash]bool{}
	for _, r := range cut(a) {
		have[r.Hash] = true
	}
	var sent int
	for _, r := range cut(b) {
		if !have[r.Hash] {
			sent += r.Length
			have[r.Hash] = true
		}
	}
	return float64(sent) / float64(len(b))
}

func cutWith(t testing.TB, p Params) func([]byte) []Ref {
	return func(b []byte) []Ref {
		refs, err := List(bytes.NewReader(b), p)
		if err != nil {
			t.Fatal(err)
		}
		return refs
	}
}

// rewritePages rewrites a share of db's pages in place, uniformly at random.
func rewritePages(db []byte, pageSize int, share float64, seed uint64) []byte {
	out := bytes.Clone(db)
	r := rand.New(rand.NewPCG(seed, 1))
	pages := len(db) / pageSize
	for _, i := range r.Perm(pages)[:int(float64(pages)*share)] {
		copy(out[i*pageSize:], payload(uint64(i)+seed<<32, pageSize))
	}
	return out
}

// TestOnePercentOfPagesCostsAboutOnePercent: the arithmetic of Pages, on
// a 32 MiB "database" with 1 % of its pages rewritten: one-page chunks send
// about 1 %, two-page chunks about 2 %, 32-page chunks about 27 %.
func TestOnePercentOfPagesCostsAboutOnePercent(t *testing.T) {
	db := payload(7, 32<<20)
	next := rewritePages(db, 4096, 0.01, 3)
	for _, tc := range []struct {
		pages    int
		min, max float64
	}{{1, 0.009, 0.011}, {2, 0.017, 0.023}, {32, 0.22, 0.32}} {
		got := changed(t, db, next, cutWith(t, Pages(4096, tc.pages)))
		if got < tc.min || got > tc.max {
			t.Errorf("%d-page chunks: %.2f%% of the bytes changed, want %.1f–%.1f%%", tc.pages, 100*got, 100*tc.min, 100*tc.max)
		}
	}
}

// TestContentChunksSurviveAnInsertion: FastCDC cuts by content, so bytes
// inserted early change only the chunks around them; fixed chunks would
// all shift.
func TestContentChunksSurviveAnInsertion(t *testing.T) {
	a := payload(9, 8<<20)
	b := append(append(bytes.Clone(a[:1<<20]), []byte("inserted")...), a[1<<20:]...)
	if got := changed(t, a, b, cutWith(t, Content)); got > 0.05 {
		t.Errorf("FastCDC: %.2f%% changed after an 8-byte insertion, want under 5%%", 100*got)
	}
	if got := changed(t, a, b, cutWith(t, Pages(4096, 16))); got < 0.5 {
		t.Errorf("fixed chunks: %.2f%% changed after an insertion; the comparison is meaningless", 100*got)
	}
}

// tree is a stream of files (as their tar is, headers aside): count files
// of 1–64 KiB, and the same stream with a share of them rewritten at
// another size.
func tree(count int, share float64) (before, after []byte) {
	r := rand.New(rand.NewPCG(11, 12))
	var a, b bytes.Buffer
	for i := range count {
		f := payload(uint64(i), 1<<10+r.IntN(63<<10))
		a.Write(f)
		if r.Float64() < share {
			f = payload(uint64(i)+1<<40, 1<<10+r.IntN(63<<10))
		}
		b.Write(f)
	}
	return a.Bytes(), b.Bytes()
}

// resticCut is restic's Rabin chunker with the same bounds and average as
// Content (2^14 = 16 KiB), for the comparison in README.md.
func resticCut(t testing.TB) func([]byte) []Ref {
	return func(b []byte) []Ref {
		c := chunker.NewWithBoundaries(bytes.NewReader(b), chunker.Pol(0x3DA3358B4DC173), uint(Content.Min), uint(Content.Max))
		c.SetAverageBits(14)
		buf := make([]byte, Content.Max)
		var refs []Ref
		for {
			ch, err := c.Next(buf)
			if err == io.EOF {
				return refs
			}
			if err != nil {
				t.Fatal(err)
			}
			refs = append(refs, Ref{Offset: int64(ch.Start), Length: int(ch.Length), Hash: sha256.Sum256(ch.Data)})
		}
	}
}

// TestOnePercentOfFilesCostsAFewPercent: a tree with 1 % of its files
// rewritten sends under 3 % with Content: the new files' bytes (1 %) and
// the chunks at their edges.
func TestOnePercentOfFilesCostsAFewPercent(t *testing.T) {
	a, b := tree(2000, 0.01)
	if got := changed(t, a, b, cutWith(t, Content)); got > 0.03 {
		t.Errorf("FastCDC: %.2f%% of the bytes sent for 1%% of the files changed, want under 3%%", 100*got)
	}
}

// BenchmarkCutters compares the cutters on the tree with 1 % of its files
// changed: throughput, and the share of bytes a sync would send
// (sent-%). README.md has a run's numbers.
func BenchmarkCutters(b *testing.B) {
	before, after := tree(2000, 0.01)
	for name, cut := range map[string]func(testing.TB) func([]byte) []Ref{
		"fastcdc-v1.0.0": func(t testing.TB) func([]byte) []Ref { return cutWith(t, Content) },
		"restic-rabin":   resticCut,
	} {
		b.Run(name, func(b *testing.B) {
			f := cut(b)
			b.SetBytes(int64(len(after)))
			for b.Loop() {
				f(after)
			}
			b.ReportMetric(100*changed(b, before, after, f), "sent-%")
		})
	}
}
