// Package chunk cuts payloads into content-addressed chunks, so that sync
// sends only the chunks a target lacks (and a target assembles a backup
// from chunks it already holds plus what arrives), and backup-scheduler
// can write a `files` archive as one compressed frame per chunk.
//
// Three cutters under versioned algorithm names (a chunk list records its
// Params, so it is read with the cutter that made it), the first two from
// github.com/PlakarKorp/go-cdc-chunkers (see README.md for the choice):
//
//   - Pages: fixed chunks of whole SQLite pages, for `sqlite` payloads. A
//     changed page changes exactly its chunk, and nothing shifts.
//   - Content: FastCDC (content-defined) for streams where an insertion
//     shifts everything after it, such as the tar of a `files` tree.
//   - ZstdFrames: the frames of a zstd stream (frames.go), for the
//     `files` archive, which compresses each Content chunk of its tar as
//     one frame.
package chunk

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fastcdc" // registers fastcdc-v1.0.0
	_ "github.com/PlakarKorp/go-cdc-chunkers/chunkers/fixed"   // registers fixed-v1.0.0
)

// Params say how a payload is cut.
type Params struct {
	// Algorithm is the cutter's versioned name, e.g. "fastcdc-v1.0.0".
	Algorithm string `json:"algorithm"`
	// Min, Normal and Max are chunk sizes in bytes; a fixed cutter has
	// one size (Min = Normal = Max).
	Min    int `json:"min"`
	Normal int `json:"normal"`
	Max    int `json:"max"`
}

// The cutters' names.
const (
	AlgorithmFixed   = "fixed-v1.0.0"
	AlgorithmFastCDC = "fastcdc-v1.0.0"
)

// Pages cuts a SQLite database into chunks of n pages of pageSize bytes
// (both powers of two, as SQLite's page sizes are). With a fraction f of
// pages rewritten uniformly at random a chunk changes with probability
// 1 − (1 − f)^n: for f = 1 %, 1 page ≈ 1 %, 2 pages ≈ 2 %, 32 pages
// (128 KiB of 4 KiB pages) ≈ 27 %; and each chunk costs a list entry. One
// or two pages per chunk is the natural unit.
func Pages(pageSize, n int) Params {
	s := pageSize * n
	return Params{Algorithm: AlgorithmFixed, Min: s, Normal: s, Max: s}
}

// Content is FastCDC with chunks of 4 KiB to 64 KiB, 16 KiB on average. A
// changed file costs its own bytes plus the chunks it shares with its
// neighbours, about one average chunk: in a tree of 1–64 KiB files with 1 %
// of them rewritten that is 2.5 % sent at 16 KiB, 6.6 % at 64 KiB, 2.1 %
// at 8 KiB (README.md); below 16 KiB the chunk list (about 50 bytes an
// entry) and the per-chunk compression frames start to cost more than they
// save.
var Content = Params{Algorithm: AlgorithmFastCDC, Min: 4 << 10, Normal: 16 << 10, Max: 64 << 10}

// Validate says what is wrong with p, or nil.
func (p Params) Validate() error {
	if p.Algorithm != AlgorithmFixed && p.Algorithm != AlgorithmFastCDC && p.Algorithm != AlgorithmZstdFrames {
		return fmt.Errorf("chunk: algorithm %q is not %s, %s or %s", p.Algorithm, AlgorithmFixed, AlgorithmFastCDC, AlgorithmZstdFrames)
	}
	if p.Algorithm == AlgorithmZstdFrames && p.Max < zstdMaxHeader {
		return fmt.Errorf("chunk: %s pieces of at most %d bytes cannot hold a frame header; want max >= %d", p.Algorithm, p.Max, zstdMaxHeader)
	}
	if p.Min <= 0 || p.Min > p.Normal || p.Normal > p.Max {
		return fmt.Errorf("chunk: sizes min %d, normal %d, max %d: want 0 < min <= normal <= max", p.Min, p.Normal, p.Max)
	}
	if p.Algorithm == AlgorithmFixed && (p.Min != p.Max || p.Normal&(p.Normal-1) != 0) {
		return fmt.Errorf("chunk: a fixed chunk size must be one power of two, got min %d, normal %d, max %d", p.Min, p.Normal, p.Max)
	}
	return nil
}

// Hash is a chunk's SHA-256.
type Hash [sha256.Size]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText writes the hash in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText reads a hash in hex.
func (h *Hash) UnmarshalText(b []byte) error {
	if hex.DecodedLen(len(b)) != len(h) {
		return fmt.Errorf("chunk: hash %q is not %d hex bytes", b, len(h))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Ref is one chunk of a payload: where it is and what it holds.
type Ref struct {
	Offset int64 `json:"offset"`
	Length int   `json:"length"`
	Hash   Hash  `json:"hash"`
}

// Split reads r to its end and calls fn with each chunk in order; data is
// valid only during the call. An error from fn stops Split and is returned.
func Split(r io.Reader, p Params, fn func(ref Ref, data []byte) error) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.Algorithm == AlgorithmZstdFrames {
		return splitZstdFrames(r, p, fn)
	}
	c, err := chunkers.NewChunker(p.Algorithm, r, &chunkers.ChunkerOpts{MinSize: p.Min, NormalSize: p.Normal, MaxSize: p.Max})
	if err != nil {
		return fmt.Errorf("chunk: %s: %w", p.Algorithm, err)
	}
	var off int64
	for {
		data, err := c.Next()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if len(data) > 0 {
			if ferr := fn(Ref{Offset: off, Length: len(data), Hash: sha256.Sum256(data)}, data); ferr != nil {
				return ferr
			}
			off += int64(len(data))
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

// List is the chunks of r, in order.
func List(r io.Reader, p Params) ([]Ref, error) {
	var refs []Ref
	err := Split(r, p, func(ref Ref, _ []byte) error {
		refs = append(refs, ref)
		return nil
	})
	return refs, err
}
