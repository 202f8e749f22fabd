package target

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
)

// ParamsFor chooses how a payload file is cut, from its first bytes: a
// SQLite database in chunks of one page (with 1% of pages rewritten, 1% of
// chunks change; the chunk list costs 32 bytes a page, 0.8% at 4 KiB, and
// only on the first copy, since later ones name the unchanged runs of
// their base by offset), a zstd stream (the files kind's archive) at its
// frames, anything else by content (FastCDC).
func ParamsFor(head []byte) chunk.Params {
	if len(head) >= 100 && bytes.HasPrefix(head, []byte("SQLite format 3\x00")) {
		size := int(binary.BigEndian.Uint16(head[16:18]))
		if size == 1 {
			size = 65536
		}
		if size >= 512 && size&(size-1) == 0 {
			return chunk.Pages(size, 1)
		}
	}
	if len(head) >= 4 && binary.LittleEndian.Uint32(head) == 0xFD2FB528 {
		return chunk.ZstdFrames
	}
	return chunk.Content
}

// FirstCopy is how a file is cut when the target holds no base: nothing
// can be shared, so a chunk need only be large enough to cost little to
// stage at the target (a SQLite page each would be 262,144 staged chunks
// a GiB) and small enough that a resumed transfer repeats little; 256 KiB
// also fits a NATS message with its frame.
var FirstCopy = chunk.Params{Algorithm: chunk.AlgorithmFixed, Min: 256 << 10, Normal: 256 << 10, Max: 256 << 10}

// Loc is where a chunk's bytes are in the source backup.
type Loc struct {
	Path   string
	Offset int64
	Length int
}

// Stats count a transfer.
type Stats struct {
	BytesSent, BytesTotal   int64
	ChunksSent, ChunksTotal int64
}

// sourceManifest reads and parses backup name's MANIFEST.json in dir.
func sourceManifest(dir, name string) ([]byte, backup.Manifest, error) {
	manifest, err := os.ReadFile(filepath.Join(dir, name, backup.ManifestName))
	if err != nil {
		return nil, backup.Manifest{}, fmt.Errorf("source backup %s: %w", name, err)
	}
	m, err := backup.ParseManifest(manifest)
	if err != nil {
		return nil, backup.Manifest{}, fmt.Errorf("source backup %s: %w", name, err)
	}
	return manifest, m, nil
}

// Build makes the recipe of backup name in dir: each file cut into chunks
// (ParamsFor; FirstCopy with no base), a chunk found in base (a backup of
// dir the target holds too; "" for none) named by its place there, runs of
// them merged, the rest by hash. It returns where each hashed chunk is in
// the source.
func Build(ctx context.Context, dir, name, base string) (Recipe, map[chunk.Hash]Loc, error) {
	manifest, m, err := sourceManifest(dir, name)
	if err != nil {
		return Recipe{}, nil, err
	}
	inBase := map[chunk.Hash]Loc{}
	if base != "" {
		bm, err := backup.ReadManifest(dir, base)
		if err != nil {
			return Recipe{}, nil, fmt.Errorf("base backup: %w", err)
		}
		for _, f := range bm.Files {
			err := cut(ctx, filepath.Join(dir, base), f.Path, false, func(ref chunk.Ref) {
				if _, ok := inBase[ref.Hash]; !ok {
					inBase[ref.Hash] = Loc{Path: f.Path, Offset: ref.Offset, Length: ref.Length}
				}
			})
			if err != nil {
				return Recipe{}, nil, fmt.Errorf("base backup %s: %w", base, err)
			}
		}
	}
	r := Recipe{Name: name, Manifest: manifest, Base: base}
	locs := map[chunk.Hash]Loc{}
	for _, f := range m.Files {
		rf := File{Path: f.Path}
		err := cut(ctx, filepath.Join(dir, name), f.Path, base == "", func(ref chunk.Ref) {
			if b, ok := inBase[ref.Hash]; ok {
				if n := len(rf.Parts); n > 0 {
					last := &rf.Parts[n-1]
					if last.Path == b.Path && last.Offset+last.Length == b.Offset {
						last.Length += int64(b.Length)
						return
					}
				}
				rf.Parts = append(rf.Parts, Part{Path: b.Path, Offset: b.Offset, Length: int64(b.Length)})
				return
			}
			rf.Parts = append(rf.Parts, Part{Hash: ref.Hash, Length: int64(ref.Length)})
			if _, ok := locs[ref.Hash]; !ok {
				locs[ref.Hash] = Loc{Path: f.Path, Offset: ref.Offset, Length: ref.Length}
			}
		})
		if err != nil {
			return Recipe{}, nil, fmt.Errorf("source backup %s: %w", name, err)
		}
		r.Files = append(r.Files, rf)
	}
	return r, locs, nil
}

// wholeFiles is the recipe of backup name of dir as its files whole, a
// part each, for a Local target and no base.
func wholeFiles(dir, name string) (Recipe, error) {
	manifest, m, err := sourceManifest(dir, name)
	if err != nil {
		return Recipe{}, err
	}
	r := Recipe{Name: name, Manifest: manifest}
	for _, f := range m.Files {
		r.Files = append(r.Files, File{Path: f.Path, Parts: []Part{{Length: f.Size}}})
	}
	return r, nil
}

// cut calls fn with each chunk of file rel of the backup at root, cut
// for a first copy or by its content's kind (ParamsFor).
func cut(ctx context.Context, root, rel string, first bool, fn func(chunk.Ref)) error {
	f, err := os.Open(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	params := FirstCopy
	if !first {
		head, _ := br.Peek(100)
		params = ParamsFor(head)
	}
	return chunk.Split(br, params, func(ref chunk.Ref, _ []byte) error {
		fn(ref)
		return ctx.Err()
	})
}

// InFlight is how many Puts Send keeps in flight.
const InFlight = 4

// SendOptions tune Send.
type SendOptions struct {
	// Batch is the most chunk bytes one Put carries (default 512 KiB: a
	// NATS message is 1 MiB at most).
	Batch int
	// Progress, if set, is told the bytes sent so far after each Put.
	Progress func(sent, total int64)
	// Pace, if set, is called before each Put with its size; it blocks
	// to keep a bandwidth limit.
	Pace func(ctx context.Context, n int) error
	// Full sends every chunk, whatever the target holds or has staged
	// (a full backup); otherwise only those it lacks (a hash backup).
	// Build with no base for a full backup.
	Full bool
}

// Send ships backup name of dir to t: the chunks t lacks (every chunk if
// o.Full), then the recipe; a Local target copies them from dir itself.
// It counts what it sent; a backup t holds already costs a List.
func Send(ctx context.Context, t Target, dir, name, base string, o SendOptions) (Stats, error) {
	if o.Batch <= 0 {
		o.Batch = 512 << 10
	}
	if o.Full {
		base = ""
	}
	local, isLocal := t.(Local)
	var r Recipe
	var locs map[chunk.Hash]Loc
	var err error
	if isLocal && base == "" {
		// Nothing to share: each file whole, with no chunking.
		r, err = wholeFiles(dir, name)
	} else {
		r, locs, err = Build(ctx, dir, name, base)
	}
	if err != nil {
		return Stats{}, err
	}
	held, err := t.List(ctx)
	if err != nil {
		return Stats{}, err
	}
	sum := sha256.Sum256(r.Manifest)
	for _, h := range held {
		if h.Name == name && h.ManifestSHA256 == hex.EncodeToString(sum[:]) {
			return Stats{}, nil // held already (an earlier answer was lost)
		}
	}
	var st Stats
	for _, f := range r.Files {
		for _, p := range f.Parts {
			st.BytesTotal += p.Length
			if p.Path == "" {
				st.ChunksTotal++
			}
		}
	}
	if isLocal {
		// Every part not in the base is copied from the source.
		st.BytesSent, st.ChunksSent = st.BytesTotal, st.ChunksTotal
		for _, f := range r.Files {
			for _, p := range f.Parts {
				if p.Path != "" {
					st.BytesSent -= p.Length
				}
			}
		}
		if err := local.CommitFrom(ctx, r, filepath.Join(dir, name), o.Pace); err != nil {
			return Stats{}, err
		}
		if o.Progress != nil {
			o.Progress(st.BytesSent, st.BytesTotal)
		}
		return st, nil
	}
	hashes := r.Hashes()
	var missing []chunk.Hash
	if o.Full {
		missing = hashes
	}
	for i := 0; !o.Full && i < len(hashes); i += 4096 {
		m, err := t.Missing(ctx, hashes[i:min(i+4096, len(hashes))])
		if err != nil {
			return st, err
		}
		missing = append(missing, m...)
	}
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// Puts go out up to InFlight at a time: the target answers them one
	// after the other, and the next is on the wire meanwhile.
	var (
		batch  []Chunk
		size   int
		mu     sync.Mutex // st and putErr, while Puts are in flight
		putErr error
		wg     sync.WaitGroup
		slots  = make(chan struct{}, InFlight)
	)
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return putErr
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := failed(); err != nil {
			return err
		}
		if o.Pace != nil {
			if err := o.Pace(ctx, size); err != nil {
				return err
			}
		}
		chunks, n := batch, size
		batch, size = nil, 0
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := t.Put(ctx, chunks)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if putErr == nil {
					putErr = err
				}
				return
			}
			st.BytesSent += int64(n)
			st.ChunksSent += int64(len(chunks))
			if o.Progress != nil {
				o.Progress(st.BytesSent, st.BytesTotal)
			}
		}()
		return nil
	}
	for _, h := range missing {
		loc := locs[h]
		f := files[loc.Path]
		if f == nil {
			if f, err = os.Open(filepath.Join(dir, name, filepath.FromSlash(loc.Path))); err != nil {
				wg.Wait()
				return st, fmt.Errorf("source backup %s: %w", name, err)
			}
			files[loc.Path] = f
		}
		data := make([]byte, loc.Length)
		if _, err := f.ReadAt(data, loc.Offset); err != nil && err != io.EOF {
			wg.Wait()
			return st, fmt.Errorf("source backup %s: %s: %w", name, loc.Path, err)
		}
		if size+len(data) > o.Batch {
			if err := flush(); err != nil {
				wg.Wait()
				return st, err
			}
		}
		batch = append(batch, Chunk{Hash: h, Data: data})
		size += len(data)
	}
	err = flush()
	wg.Wait()
	if err == nil {
		err = failed()
	}
	if err != nil {
		return st, err
	}
	return st, t.Commit(ctx, r)
}
