// Package target is where sync ships backups: one interface, a package per
// kind (dir: a backup directory on this host, or on another host through
// that host's sync service), and one conformance test (targettest) that
// every kind passes.
//
// A transfer is content-addressed. The sender cuts each payload file into
// chunks (pkg/chunk), asks the target which chunks it lacks (Missing),
// sends only those (Put), and then asks it to assemble the backup (Commit)
// from a Recipe: per file, parts that are either a chunk by hash or a byte
// range of a base backup the target already holds. The target makes the
// backup visible only once every file matches the manifest, so it never
// lists a backup it cannot restore. Chunks put but not yet committed are
// staged, so an interrupted transfer resumes sending only what is missing.
package target

import (
	"context"
	"errors"
	"fmt"

	"lifeboat.dev/pkg/chunk"
)

// Target holds a plan's backups as plain backup directories (or, for later
// kinds, objects from which they are restored).
type Target interface {
	// List returns the backups held, oldest first.
	List(ctx context.Context) ([]Held, error)
	// Missing returns those of hashes that must be sent: not staged.
	Missing(ctx context.Context, hashes []chunk.Hash) ([]chunk.Hash, error)
	// Put stages chunks, each checked against its hash.
	Put(ctx context.Context, chunks []Chunk) error
	// Commit assembles, verifies and publishes a backup. A part that
	// cannot be read, a staged chunk that is corrupt (it is dropped, to
	// be sent again) or a file that does not match the manifest fails it
	// with an error wrapping ErrIncomplete or backup.ErrCorrupt, and
	// leaves no backup.
	Commit(ctx context.Context, r Recipe) error
	// Prune removes a backup; removing one that is not there is not an
	// error.
	Prune(ctx context.Context, name string) error
}

// Local is a target on this host's file system. It takes the parts a
// recipe names by hash from the source backup itself, at the part's place
// in the file it assembles (where Build found them), instead of having
// them staged by Put: a copy on one machine costs a read and a write, as
// cp's does. Send uses it when a target has it.
type Local interface {
	Target
	// CommitFrom is Commit with the hashed parts read from the source
	// backup directory src; pace, if not nil, is called before each piece
	// of at most 1 MiB copied from src, to keep a bandwidth limit.
	CommitFrom(ctx context.Context, r Recipe, src string, pace func(ctx context.Context, n int) error) error
}

// Held is a backup a target holds.
type Held struct {
	Name string `json:"name"`
	// ManifestSHA256 is the hex SHA-256 of its MANIFEST.json, as
	// BackupTaken's sha256: the same value means the same backup.
	ManifestSHA256 string `json:"manifest_sha256"`
}

// Chunk is a chunk's bytes and their SHA-256.
type Chunk struct {
	Hash chunk.Hash
	Data []byte
}

// Recipe says how a target assembles a backup.
type Recipe struct {
	// Name is the backup's directory name.
	Name string `json:"name"`
	// Manifest is the source's MANIFEST.json, byte for byte.
	Manifest []byte `json:"manifest"`
	// Base is a backup the target holds that Parts with a Path refer to.
	Base string `json:"base,omitempty"`
	// Files are the payload files, each the concatenation of its parts.
	Files []File `json:"files"`
}

// File is one payload file of a Recipe.
type File struct {
	Path  string `json:"path"`
	Parts []Part `json:"parts"`
}

// Part is a run of a file: a chunk (Hash, staged or put before Commit), or
// Length bytes at Offset of file Path of the recipe's Base.
type Part struct {
	Hash   chunk.Hash `json:"hash,omitzero"`
	Path   string     `json:"path,omitempty"`
	Offset int64      `json:"offset,omitempty"`
	Length int64      `json:"length"`
}

// ErrIncomplete is wrapped by a Commit that lacks a part: a chunk neither
// staged nor intact, or a base that is gone. Sending again heals it.
var ErrIncomplete = errors.New("target lacks a part of the backup")

// ErrRefused is wrapped by an operation a target refuses for what it is
// asked to hold (a directory that holds another plan's backups): sending
// again does not heal it, changing the configuration does.
var ErrRefused = errors.New("target refuses the plan")

// Hashes returns the chunks a recipe needs, each once, in order.
func (r *Recipe) Hashes() []chunk.Hash {
	seen := map[chunk.Hash]bool{}
	var out []chunk.Hash
	for _, f := range r.Files {
		for _, p := range f.Parts {
			if p.Path == "" && !seen[p.Hash] {
				seen[p.Hash] = true
				out = append(out, p.Hash)
			}
		}
	}
	return out
}

// Check says what is wrong with a recipe's shape.
func (r *Recipe) Check() error {
	if len(r.Manifest) == 0 || len(r.Files) == 0 {
		return fmt.Errorf("target: recipe of %q: no manifest or no files", r.Name)
	}
	for _, f := range r.Files {
		for _, p := range f.Parts {
			switch {
			case p.Length < 0 || p.Offset < 0:
				return fmt.Errorf("target: recipe of %q: %s: a part with a negative offset or length", r.Name, f.Path)
			case p.Path != "" && r.Base == "":
				return fmt.Errorf("target: recipe of %q: %s: a part of base file %s, but no base", r.Name, f.Path, p.Path)
			}
		}
	}
	return nil
}
