package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// FormatVersion is the version of the manifest this package writes. Readers
// refuse a manifest with a higher version rather than misread it.
const FormatVersion = 1

// ManifestName is the manifest's file name inside a backup directory. No
// payload file may have this name at the payload's top level.
const ManifestName = "MANIFEST.json"

// Kind says why a backup was taken.
type Kind string

// The kinds of backup (the BackupTaken event's kind).
const (
	KindScheduled Kind = "scheduled" // taken by a plan's schedule
	KindManual    Kind = "manual"    // asked for by an operator
	KindHash      Kind = "hash"      // a full backup whose transfer sends only changed chunks
	KindFull      Kind = "full"      // a full backup whose transfer sends everything
)

// Valid reports whether k is one of the kinds above.
func (k Kind) Valid() bool {
	switch k {
	case KindScheduled, KindManual, KindHash, KindFull:
		return true
	}
	return false
}

// Manifest is MANIFEST.json: what a backup holds and how it was taken.
type Manifest struct {
	// FormatVersion is the manifest's format; Write sets it.
	FormatVersion int `json:"format_version"`
	// Instance is the protected instance the store belongs to.
	Instance string `json:"instance"`
	// Plan is the backup plan that took the backup.
	Plan string `json:"plan"`
	// StoreKind is the store kind that wrote the payload ("sqlite", "files", "command").
	StoreKind string `json:"store_kind"`
	// Kind says why the backup was taken.
	Kind Kind `json:"kind"`
	// Epoch is the epoch of the instance's lease under which the backup
	// was taken (DESIGN §1 "Instances"); 0 when the instance has no lease
	// (a plan of a host's own store).
	Epoch uint64 `json:"epoch,omitempty"`
	// Files lists every payload file, sorted by path; Write fills it.
	Files []File `json:"files"`
	// TotalBytes is the sum of the files' sizes; Write fills it.
	TotalBytes int64 `json:"total_bytes"`
	// SHA256 identifies the whole payload (hex): the SHA-256 of the lines
	// "<sha256>  <path>\n" of Files in order (sha256sum's format), so it
	// changes when any file's content or name does. Write fills it; it is the
	// BackupTaken event's sha256.
	SHA256 string `json:"sha256"`
	// TakenAt is when the backup was started; Write sets it to now when zero.
	TakenAt time.Time `json:"taken_at"`
	// ConsistentAt is the store kind's guarantee: every change committed to
	// the store before it is in the payload. Write fills it from Info.
	ConsistentAt time.Time `json:"consistent_at"`
	// LifeboatVersion is the version of lifeboat that wrote the backup.
	LifeboatVersion string `json:"lifeboat_version"`
	// LoadCommand is, for a command store, the command that loads the payload
	// (read on stdin) back into the store; Write fills it from Info.
	LoadCommand []string `json:"load_command,omitempty"`
}

// File is one payload file in a manifest.
type File struct {
	// Path is the file's slash-separated path inside the backup directory.
	Path string `json:"path"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the file's content.
	SHA256 string `json:"sha256"`
	// Mode is the file's permission bits.
	Mode Mode `json:"mode"`
}

// Mode is a file's permission bits, written in octal ("0644") for people who
// read manifests.
type Mode fs.FileMode

// MarshalText writes the mode in octal.
func (m Mode) MarshalText() ([]byte, error) {
	return []byte(fmt.Sprintf("%04o", uint32(m))), nil
}

// UnmarshalText reads an octal mode.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || fs.FileMode(v)&^fs.ModePerm != 0 {
		return fmt.Errorf("mode %q: want octal permission bits such as 0644", b)
	}
	*m = Mode(v)
	return nil
}

// payloadSum is the manifest's SHA256 of files (sorted by path).
func payloadSum(files []File) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s  %s\n", f.SHA256, f.Path)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReadManifest reads and checks the manifest of backup name in dir without
// reading the payload (Verify does that). A missing or malformed manifest
// gives an error wrapping ErrCorrupt.
func ReadManifest(dir, name string) (Manifest, error) {
	if _, err := ParseName(name); err != nil {
		return Manifest{}, fmt.Errorf("backup: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, name, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(dir, name)); serr != nil {
			return Manifest{}, fmt.Errorf("backup: %s: %w", name, serr)
		}
		return Manifest{}, fmt.Errorf("backup: %s: %w: %s is missing (a backup copied in by hand, or not written by lifeboat)", name, ErrCorrupt, ManifestName)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %s: %w", name, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return Manifest{}, fmt.Errorf("backup: %s: %w", name, err)
	}
	return m, nil
}

// ParseManifest reads and checks a MANIFEST.json's bytes; an error wraps
// ErrCorrupt.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, ManifestName, err)
	}
	if err := m.check(); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, ManifestName, err)
	}
	return m, nil
}

// check validates a manifest read from disk.
func (m *Manifest) check() error {
	switch {
	case m.FormatVersion <= 0:
		return errors.New("no format_version: not a lifeboat manifest")
	case m.FormatVersion > FormatVersion:
		return fmt.Errorf("format_version %d is newer than this lifeboat reads (%d): upgrade lifeboat", m.FormatVersion, FormatVersion)
	case len(m.Files) == 0:
		return errors.New("lists no files")
	}
	var total int64
	for i, f := range m.Files {
		if !fs.ValidPath(f.Path) || f.Path == "." || f.Path == ManifestName {
			return fmt.Errorf("file %q: not a payload path", f.Path)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("files not sorted by path or %q listed twice", f.Path)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: negative size", f.Path)
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("file %q: sha256 %q is not a hex SHA-256", f.Path, f.SHA256)
		}
		total += f.Size
	}
	if total != m.TotalBytes {
		return fmt.Errorf("total_bytes %d, but the files add up to %d", m.TotalBytes, total)
	}
	if sum := payloadSum(m.Files); sum != m.SHA256 {
		return fmt.Errorf("sha256 %s does not match the file list's %s", m.SHA256, sum)
	}
	return nil
}

// checkNew validates the caller's part of a manifest before Write.
func (m *Manifest) checkNew() error {
	switch {
	case m.Instance == "":
		return errors.New("manifest: instance is empty")
	case m.Plan == "":
		return errors.New("manifest: plan is empty")
	case m.StoreKind == "":
		return errors.New("manifest: store_kind is empty")
	case !m.Kind.Valid():
		return fmt.Errorf("manifest: kind %q: want scheduled, manual, hash or full", m.Kind)
	}
	return nil
}

// sortFiles sorts files by path, the order manifests keep.
func sortFiles(files []File) {
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
}
