// Package dir is the `dir` target kind: a backup directory holding plain
// backup directories, byte-identical to the source's with their
// MANIFEST.json, so that verification and restore read only this disk.
//
// It keeps no second copy of what it holds: a new backup is assembled
// from byte ranges of a backup it holds (the recipe's base, what the
// sender found the two share) plus the chunks sent for it, which wait in
// <dir>/.lifeboat-sync/chunks until the commit that uses them.
//
// Staged chunks are garbage-collected by one rule, kopia's: a chunk is
// removed only after a commit that used it, or once nothing has put or
// used it for GracePeriod, far longer than any transfer runs between two
// of its puts. A transfer in progress (or one resumed after a crash)
// therefore never loses a chunk it is about to reference, and an abandoned
// one (its backup pruned at the source) costs space only for a while.
package dir

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
)

// GracePeriod is how long a staged chunk nothing has used is kept.
const GracePeriod = 24 * time.Hour

// StateDir is the directory, inside the backup directory, of what the
// target keeps besides backups. backup.List ignores it.
const StateDir = ".lifeboat-sync"

// Dir is a dir target at one backup directory.
type Dir struct {
	path string
	plan string
	now  func() time.Time
	mu   sync.Mutex // one Put, Commit or Prune at a time

	ownMu sync.Mutex
	owned bool
}

// New returns the dir target of plan's backups at path (created on the
// first Put or Commit). The first write records plan in the directory
// (StateDir/plan), and a Dir of another plan at the same path is refused
// (target.ErrRefused): two plans' backups in one directory would prune
// each other's and build on each other's as bases. plan "" records and
// checks nothing.
func New(path, plan string) *Dir { return &Dir{path: path, plan: plan, now: time.Now} }

// Path is the backup directory.
func (d *Dir) Path() string { return d.path }

// own checks that the directory is not another plan's, and records
// this plan in it if create and none is recorded yet.
func (d *Dir) own(create bool) error {
	if d.plan == "" {
		return nil
	}
	d.ownMu.Lock()
	defer d.ownMu.Unlock()
	if d.owned {
		return nil
	}
	p := filepath.Join(d.path, StateDir, "plan")
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if other := strings.TrimSpace(string(b)); other != d.plan {
			return fmt.Errorf("dir target %s holds plan %q's backups (%s says so), and plan %q points at it too: %w; give each plan its own directory (a {plan} in the target's path does)", d.path, other, p, d.plan, target.ErrRefused)
		}
	case errors.Is(err, fs.ErrNotExist):
		if !create {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return fmt.Errorf("dir target %s: %w (is the disk full or read-only?)", d.path, err)
		}
		if err := os.WriteFile(p+".tmp", []byte(d.plan+"\n"), 0o640); err != nil {
			return fmt.Errorf("dir target %s: %w (is the disk full?)", d.path, err)
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			return err
		}
	default:
		return fmt.Errorf("dir target %s: %w", d.path, err)
	}
	d.owned = true
	return nil
}

func (d *Dir) chunkPath(h chunk.Hash) string {
	return filepath.Join(d.path, StateDir, "chunks", h.String())
}

// List returns the backups in the directory, oldest first.
func (d *Dir) List(ctx context.Context) ([]target.Held, error) {
	if err := d.own(false); err != nil {
		return nil, err
	}
	entries, err := backup.List(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([]target.Held, 0, len(entries))
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(d.path, e.Name, backup.ManifestName))
		if err != nil {
			// Not one of ours (copied in by hand): not a base to build on.
			continue
		}
		sum := sha256.Sum256(b)
		out = append(out, target.Held{Name: e.Name, ManifestSHA256: hex.EncodeToString(sum[:])})
	}
	return out, ctx.Err()
}

// Missing returns the hashes not staged.
func (d *Dir) Missing(ctx context.Context, hashes []chunk.Hash) ([]chunk.Hash, error) {
	if err := d.own(false); err != nil {
		return nil, err
	}
	var out []chunk.Hash
	for _, h := range hashes {
		if _, err := os.Stat(d.chunkPath(h)); err != nil {
			out = append(out, h)
		}
	}
	return out, ctx.Err()
}

// Put stages chunks; one whose bytes do not match its hash is refused.
// A chunk staged already has its time renewed (GracePeriod).
func (d *Dir) Put(ctx context.Context, chunks []target.Chunk) error {
	if err := d.own(true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	dir := filepath.Join(d.path, StateDir, "chunks")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("dir target %s: %w (is the disk full or read-only?)", d.path, err)
	}
	for _, c := range chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if sha256.Sum256(c.Data) != c.Hash {
			return fmt.Errorf("dir target %s: chunk %s arrived altered (its bytes hash otherwise); not staged, send it again", d.path, c.Hash)
		}
		p := d.chunkPath(c.Hash)
		now := d.now()
		if err := os.Chtimes(p, now, now); err == nil {
			continue
		}
		// Written whole under a temporary name, so a crash leaves no torn
		// chunk under its hash; Commit checks each anyway.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, c.Data, 0o640); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("dir target %s: stage chunk: %w (is the disk full?)", d.path, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("dir target %s: stage chunk: %w", d.path, err)
		}
	}
	return nil
}

// Commit assembles r into a temporary directory, verifies it against its
// manifest and renames it into place (backup.Place), then removes the
// chunks it used and the staged chunks past GracePeriod.
func (d *Dir) Commit(ctx context.Context, r target.Recipe) error {
	return d.commit(ctx, r, "", nil)
}

// CommitFrom is Commit taking the hashed parts from the source backup src
// on this host (target.Local), pacing each piece copied from it.
func (d *Dir) CommitFrom(ctx context.Context, r target.Recipe, src string, pace func(ctx context.Context, n int) error) error {
	return d.commit(ctx, r, src, pace)
}

func (d *Dir) commit(ctx context.Context, r target.Recipe, src string, pace func(ctx context.Context, n int) error) error {
	if err := r.Check(); err != nil {
		return err
	}
	if err := d.own(true); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := os.Stat(filepath.Join(d.path, r.Name)); err == nil {
		// Committed before (a retry after a lost answer): good only if
		// it is the same backup.
		sum, err := fileSum(filepath.Join(d.path, r.Name, backup.ManifestName))
		want := sha256.Sum256(r.Manifest)
		if err != nil || sum != want {
			return fmt.Errorf("dir target %s: %s exists and is another backup (its manifest differs): %w; two plans may point at this directory", d.path, r.Name, fs.ErrExist)
		}
		d.drop(r)
		return nil
	}
	if err := d.removeTemp(); err != nil {
		return err
	}
	err := backup.Place(ctx, d.path, r.Name, r.Manifest, func(ctx context.Context, tmp string) (map[string]string, error) {
		sums := map[string]string{}
		for _, f := range r.Files {
			sum, err := d.assemble(ctx, r, f, tmp, src, pace)
			if err != nil {
				return nil, err
			}
			sums[f.Path] = sum
		}
		return sums, applyModes(r.Manifest, tmp)
	})
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("dir target %s: the disk is full: free space there or point the target at a larger disk; nothing of %s was kept: %w", d.path, r.Name, err)
	}
	if err != nil {
		return fmt.Errorf("dir target %s: %w", d.path, err)
	}
	d.drop(r)
	return nil
}

// drop removes the chunks a committed recipe used, and those staged that
// nothing used within GracePeriod.
func (d *Dir) drop(r target.Recipe) {
	for _, h := range r.Hashes() {
		_ = os.Remove(d.chunkPath(h))
	}
	d.collect()
}

// assemble writes file f of r under tmp from its parts: a hashed part
// from its staged chunk or, with src, from the same place of the same file
// of the source backup src. It returns the file's hex SHA-256, read back
// from the file as it is written, on another core (follow): the copy and
// its verification overlap, where a second pass would add its time.
func (d *Dir) assemble(ctx context.Context, r target.Recipe, f target.File, tmp, src string, pace func(ctx context.Context, n int) error) (string, error) {
	if !fs.ValidPath(f.Path) || f.Path == "." || f.Path == backup.ManifestName {
		return "", fmt.Errorf("recipe file %q is not a payload path", f.Path)
	}
	p := filepath.Join(tmp, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return "", err
	}
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return "", err
	}
	defer out.Close()
	fl, err := follow(p)
	if err != nil {
		return "", err
	}
	defer fl.stop()
	bases := map[string]*os.File{}
	defer func() {
		for _, b := range bases {
			b.Close()
		}
	}()
	var source *os.File
	if src != "" {
		if source, err = os.Open(filepath.Join(src, filepath.FromSlash(f.Path))); err != nil {
			return "", fmt.Errorf("source backup: %w", err)
		}
		defer source.Close()
	}
	var off int64 // how much of f is written
	written := func(n int64) {
		off += n
		fl.advance(off)
	}
	for _, part := range f.Parts {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if part.Path == "" && source != nil {
			if err := copyRange(ctx, out, source, off, part.Length, pace, written); err != nil {
				return "", fmt.Errorf("%s: from the source: %w", f.Path, err)
			}
			continue
		}
		if part.Path == "" {
			if err := d.copyChunk(out, part); err != nil {
				return "", err
			}
			written(part.Length)
			continue
		}
		b := bases[part.Path]
		if b == nil {
			if !fs.ValidPath(part.Path) || part.Path == "." {
				return "", fmt.Errorf("recipe base file %q is not a payload path", part.Path)
			}
			if b, err = os.Open(filepath.Join(d.path, r.Base, filepath.FromSlash(part.Path))); err != nil {
				return "", fmt.Errorf("%w: base %s: %v", target.ErrIncomplete, r.Base, err)
			}
			bases[part.Path] = b
		}
		if err := copyRange(ctx, out, b, part.Offset, part.Length, nil, written); errors.Is(err, io.ErrUnexpectedEOF) {
			return "", fmt.Errorf("%w: base %s/%s ends before byte %d (it was altered)", target.ErrIncomplete, r.Base, part.Path, part.Offset+part.Length)
		} else if err != nil {
			return "", fmt.Errorf("%s: from base %s/%s: %w", f.Path, r.Base, part.Path, err)
		}
	}
	// Durable while the follower finishes reading (Place's own fsync
	// then finds nothing to write).
	if err := out.Sync(); err != nil {
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return fl.sum()
}

// copyPiece is the most copyRange copies before it reports: the follower
// hashes one piece while the next is copied.
const copyPiece = 8 << 20

// copyRange appends n bytes of from at off to out in pieces (of at most
// 1 MiB when paced), telling written of each. out.ReadFrom of a file lets
// the kernel copy (copy_file_range), as cp does. A from shorter than off+n
// gives io.ErrUnexpectedEOF.
func copyRange(ctx context.Context, out, from *os.File, off, n int64, pace func(ctx context.Context, n int) error, written func(int64)) error {
	if _, err := from.Seek(off, io.SeekStart); err != nil {
		return err
	}
	piece := int64(copyPiece)
	if pace != nil {
		piece = 1 << 20
	}
	for n > 0 {
		k := min(piece, n)
		if pace != nil {
			if err := pace(ctx, int(k)); err != nil {
				return err
			}
		}
		got, err := out.ReadFrom(&io.LimitedReader{R: from, N: k})
		if err != nil {
			return err
		}
		if got != k {
			return io.ErrUnexpectedEOF
		}
		written(k)
		if err := ctx.Err(); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// follower hashes a file as it is written: told how far the file is
// written, it reads it back up to there, in its own goroutine.
type follower struct {
	upto chan int64
	done chan error
	h    hash.Hash
	once sync.Once
}

func follow(path string) (*follower, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fl := &follower{upto: make(chan int64, 1024), done: make(chan error, 1), h: sha256.New()}
	go func() {
		defer f.Close()
		buf := make([]byte, 1<<20)
		var at int64
		var err error
		for n := range fl.upto {
			for err == nil && at < n {
				k, rerr := f.ReadAt(buf[:min(int64(len(buf)), n-at)], at)
				fl.h.Write(buf[:k])
				at += int64(k)
				if rerr != nil && !(rerr == io.EOF && at == n) {
					err = rerr
				}
			}
		}
		fl.done <- err
	}()
	return fl, nil
}

func (fl *follower) advance(n int64) { fl.upto <- n }

// stop ends the follower (idempotent); sum calls it.
func (fl *follower) stop() {
	fl.once.Do(func() {
		close(fl.upto)
		fl.done <- <-fl.done // keep the result for sum
	})
}

// sum is the hex SHA-256 of what was written.
func (fl *follower) sum() (string, error) {
	fl.stop()
	if err := <-fl.done; err != nil {
		return "", fmt.Errorf("read back: %w", err)
	}
	return hex.EncodeToString(fl.h.Sum(nil)), nil
}

// copyChunk appends a staged chunk, checked against its hash: a corrupt
// one is removed, so the retry sends it again.
func (d *Dir) copyChunk(out io.Writer, part target.Part) error {
	b, err := os.ReadFile(d.chunkPath(part.Hash))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: chunk %s was never put (or was collected)", target.ErrIncomplete, part.Hash)
	}
	if err != nil {
		return err
	}
	if sha256.Sum256(b) != part.Hash || int64(len(b)) != part.Length {
		_ = os.Remove(d.chunkPath(part.Hash))
		return fmt.Errorf("%w: staged chunk %s is corrupt on this disk; removed, to be sent again", target.ErrIncomplete, part.Hash)
	}
	_, err = out.Write(b)
	return err
}

// Prune removes backup name: renamed aside first, so that a crash part
// way never leaves a partial backup under its name.
func (d *Dir) Prune(ctx context.Context, name string) error {
	if _, err := backup.ParseName(name); err != nil {
		return fmt.Errorf("dir target %s: %w", d.path, err)
	}
	if err := d.own(false); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	aside := filepath.Join(d.path, StateDir, "pruning-"+name)
	if err := os.MkdirAll(filepath.Dir(aside), 0o750); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(d.path, name), aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("dir target %s: prune %s: %w", d.path, name, err)
	}
	return os.RemoveAll(aside)
}

// removeTemp removes what interrupted commits and prunes left.
func (d *Dir) removeTemp() error {
	entries, err := os.ReadDir(filepath.Join(d.path, StateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "pruning-") {
			_ = os.RemoveAll(filepath.Join(d.path, StateDir, e.Name()))
		}
	}
	_, err = backup.CleanTempPlaced(d.path)
	return err
}

// collect removes staged chunks nothing used within GracePeriod.
func (d *Dir) collect() {
	dir := filepath.Join(d.path, StateDir, "chunks")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && d.now().Sub(fi.ModTime()) > GracePeriod {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func fileSum(p string) ([sha256.Size]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// applyModes gives each file the mode its manifest records.
func applyModes(manifest []byte, tmp string) error {
	m, err := backup.ParseManifest(manifest)
	if err != nil {
		return err
	}
	for _, f := range m.Files {
		if err := os.Chmod(filepath.Join(tmp, filepath.FromSlash(f.Path)), fs.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	return nil
}

var _ target.Local = (*Dir)(nil)
