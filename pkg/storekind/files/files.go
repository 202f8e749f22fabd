// Package files is the store kind for a directory tree: the files under a
// root, chosen with include and exclude patterns (the seed's "exclude data/
// and logs/"), archived as tar + zstd with modes, owners, times and symlinks
// kept, and extracted back safely. The archive is one zstd frame per
// content-defined chunk of the tar (frames.go), so that a small change in
// the tree is a small change in the archive.
package files

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/internal/fsx"
)

// PayloadName is the archive's file name in a backup.
const PayloadName = "files.tar.zst"

// Options say which tree to back up.
type Options struct {
	// Root is the directory whose contents are backed up. A symlink is
	// followed; symlinks below it are archived as symlinks.
	Root string
	// Include, when not empty, keeps only the files that match one of its
	// patterns or lie under a directory that does (with the directories
	// leading to them). See Exclude for the pattern syntax.
	Include []string
	// Exclude drops what matches, a matching directory with everything
	// under it; it wins over Include. Patterns follow rsync: "logs/" (a
	// trailing slash) matches directories only; a pattern with no other
	// slash ("*.tmp", "license.dat") matches a base name at any depth; one
	// with a leading or inner slash ("/data", "data/backups") matches the
	// path from Root; *, ? and [...] are globs that never cross a slash.
	Exclude []string
}

// Kind backs up one directory tree.
type Kind struct {
	root             string
	include, exclude []pattern
}

// New returns the kind for opts; the error names a malformed pattern.
func New(opts Options) (*Kind, error) {
	if opts.Root == "" {
		return nil, errors.New("files: no root directory given")
	}
	inc, err := parsePatterns(opts.Include)
	if err != nil {
		return nil, fmt.Errorf("files: include: %w", err)
	}
	exc, err := parsePatterns(opts.Exclude)
	if err != nil {
		return nil, fmt.Errorf("files: exclude: %w", err)
	}
	return &Kind{root: opts.Root, include: inc, exclude: exc}, nil
}

// Name returns "files".
func (k *Kind) Name() string { return "files" }

// Dump archives the tree into payloadDir/files.tar.zst. The tree is read as
// it is, not frozen: ConsistentAt is when the walk started, and a file that
// changes size while it is archived fails the dump (freeze writers with a
// pre hook, or exclude the file). Sockets, FIFOs and devices are skipped:
// they hold no data.
func (k *Kind) Dump(ctx context.Context, payloadDir string) (backup.Info, error) {
	consistentAt := time.Now()
	root, err := filepath.EvalSymlinks(k.root)
	if err != nil {
		return backup.Info{}, fmt.Errorf("files: root %s: %w (check the plan's store path)", k.root, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return backup.Info{}, fmt.Errorf("files: root %s is not a directory", k.root)
	}
	out, err := os.OpenFile(filepath.Join(payloadDir, PayloadName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return backup.Info{}, fmt.Errorf("files: %w", err)
	}
	defer out.Close()
	zw := newFramedWriter(out)
	defer zw.Close()
	a := &archiver{sel: newSelector(k), root: root, tw: tar.NewWriter(zw), emitted: map[string]bool{}, pending: map[string]fs.FileInfo{}}
	if err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		return a.add(p, d)
	}); err != nil {
		return backup.Info{}, fmt.Errorf("files: archive %s: %w", k.root, err)
	}
	if err := errors.Join(a.tw.Close(), zw.Close(), out.Close()); err != nil {
		return backup.Info{}, fmt.Errorf("files: archive %s: %w", k.root, err)
	}
	return backup.Info{ConsistentAt: consistentAt}, nil
}

// archiver writes the entries of one walk.
type archiver struct {
	sel  *selector
	root string
	tw   *tar.Writer
	// emitted holds the directories written so far; pending, those walked
	// but not written, because with Include set a directory is written only
	// when something under it is.
	emitted map[string]bool
	pending map[string]fs.FileInfo
}

func (a *archiver) add(p string, d fs.DirEntry) error {
	rel, err := filepath.Rel(a.root, p)
	if err != nil {
		return err
	}
	rel = filepath.ToSlash(rel)
	isDir := d.IsDir()
	fi, err := d.Info()
	if err != nil {
		return err
	}
	if rel == "." {
		// The root's own mode and times, restored onto the target.
		a.emitted["."] = true
		return a.header(fi, "./", "")
	}
	excluded, included := a.sel.classify(rel, isDir)
	switch {
	case excluded && isDir:
		return filepath.SkipDir
	case excluded:
		return nil
	case isDir && included:
		if err := a.parents(rel); err != nil {
			return err
		}
		a.emitted[rel] = true
		return a.header(fi, rel+"/", "")
	case isDir:
		a.pending[rel] = fi
		return nil
	case !included:
		return nil
	case d.Type()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		if err := a.parents(rel); err != nil {
			return err
		}
		return a.header(fi, rel, target)
	case d.Type().IsRegular():
		if err := a.parents(rel); err != nil {
			return err
		}
		return a.file(p, rel)
	default:
		return nil // socket, FIFO, device
	}
}

// parents writes the pending directories above rel.
func (a *archiver) parents(rel string) error {
	dir := path.Dir(rel)
	if a.emitted[dir] {
		return nil
	}
	if err := a.parents(dir); err != nil {
		return err
	}
	fi, ok := a.pending[dir]
	if !ok {
		return fmt.Errorf("%s: parent directory was not walked", rel)
	}
	a.emitted[dir] = true
	return a.header(fi, dir+"/", "")
}

func (a *archiver) header(fi fs.FileInfo, name, link string) error {
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	hdr.Name = name
	// Whole seconds, no access or change times: plain ustar headers where
	// the names allow, rather than a PAX record for every entry.
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	return a.tw.WriteHeader(hdr)
}

// file archives the regular file at p, failing if its size changes while it
// is read.
func (a *archiver) file(p, rel string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := a.header(fi, rel, ""); err != nil {
		return err
	}
	n, err := io.Copy(a.tw, io.LimitReader(f, fi.Size()))
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); n != fi.Size() || m > 0 {
		return fmt.Errorf("%s changed size while it was archived (freeze writers with a pre hook, or exclude it)", rel)
	}
	return nil
}

// Load extracts the archive into a new directory beside target, keeps what
// target holds outside the store (entries the patterns exclude or do not
// include, hard-linked across so nothing is copied), fsyncs it, and swaps it
// into target's place (one atomic exchange on Linux): a crash leaves target
// either as it was or fully restored. This is rsync --delete with excludes:
// restoring the static content of an installation never deletes its data/.
// Entries that would land outside the tree (absolute paths, "..", or through
// a symlink) fail the load and leave target as it was. Owners are restored
// when running as root.
func (k *Kind) Load(ctx context.Context, payloadDir, target string) (err error) {
	in, err := os.Open(filepath.Join(payloadDir, PayloadName))
	if err != nil {
		return fmt.Errorf("files: payload: %w (is this a backup of a files store?)", err)
	}
	defer in.Close()
	zr, err := zstd.NewReader(in)
	if err != nil {
		return fmt.Errorf("files: payload: %w", err)
	}
	defer zr.Close()

	// A symlinked target (/opt/app -> /srv/app-1.2) is restored where it
	// points, as Dump read it, and stays a symlink.
	if resolved, err := filepath.EvalSymlinks(target); err == nil {
		target = resolved
	}
	parent := filepath.Dir(target)
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	tmp, err := os.MkdirTemp(parent, ".lifeboat-load-*")
	if err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	defer root.Close()
	dirs, err := extract(ctx, tar.NewReader(zr), root)
	if err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	kept, err := k.keep(ctx, target, tmp, root)
	if err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	if err := applyDirs(root, append(dirs, kept...)); err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	if err := syncDirs(tmp); err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	if err := fsx.Replace(tmp, target); err != nil {
		return fmt.Errorf("files: load into %s: %w", target, err)
	}
	return nil
}

// dirMeta is what applyDirs gives a directory once everything in it is
// written (a read-only directory would refuse its own contents).
type dirMeta struct {
	name  string
	mode  fs.FileMode
	mtime time.Time
	uid   int
	gid   int
}

var asRoot = os.Geteuid() == 0

// extract writes the archive's entries into root, refusing any that would
// escape it, and returns the directories' metadata for applyDirs.
func extract(ctx context.Context, tr *tar.Reader, root *os.Root) ([]dirMeta, error) {
	var dirs []dirMeta
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dirs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if name == "" || !filepath.IsLocal(filepath.FromSlash(name)) {
			return nil, fmt.Errorf("archive entry %q is not a path inside the tree: refused", hdr.Name)
		}
		d, err := extractOne(ctx, tr, hdr, root, filepath.FromSlash(name))
		if err != nil {
			return nil, fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		if d != nil {
			dirs = append(dirs, *d)
		}
	}
}

// extractOne writes one entry, returning a directory's metadata for later.
func extractOne(ctx context.Context, tr *tar.Reader, hdr *tar.Header, root *os.Root, name string) (*dirMeta, error) {
	mode := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o700); err != nil {
			return nil, err
		}
		return &dirMeta{name, mode, hdr.ModTime, hdr.Uid, hdr.Gid}, nil
	case tar.TypeReg:
		if err := root.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			return nil, err
		}
		if err := writeFile(ctx, root, name, tr); err != nil {
			return nil, err
		}
		return nil, setMeta(root, name, mode, hdr.ModTime, hdr.Uid, hdr.Gid)
	case tar.TypeSymlink:
		if err := root.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			return nil, err
		}
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return nil, err
		}
		if asRoot {
			return nil, root.Lchown(name, hdr.Uid, hdr.Gid)
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("type %q, which a files backup never holds: refused", hdr.Typeflag)
	}
}

// kindOf names a file type for errors.
func kindOf(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "special file"
}

// keep hard-links into the new tree at tmp (opened as root) what target
// holds outside the store, and returns the directories it made. Where the
// backup has something else at such a path, the load fails rather than
// drop what is there.
func (k *Kind) keep(ctx context.Context, target, tmp string, root *os.Root) ([]dirMeta, error) {
	if fi, err := os.Lstat(target); errors.Is(err, fs.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return nil, nil // nothing to keep
	}
	sel := newSelector(k)
	kept := map[string]bool{} // directories whose whole content is kept
	var dirs []dirMeta
	err := filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(target, p)
		if err != nil || rel == "." {
			return err
		}
		slash := filepath.ToSlash(rel)
		isDir := d.IsDir()
		all := kept[path.Dir(slash)]
		excluded, included := sel.classify(slash, isDir)
		if !all && included {
			return nil // the store's: the backup has it
		}
		if err := realDir(root, filepath.Dir(rel)); err != nil {
			return fmt.Errorf("cannot keep %s: %w", slash, err)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, err := root.Lstat(rel)
		if err == nil {
			switch {
			case isDir && st.IsDir():
				kept[slash] = all || excluded
				return nil
			case isDir || st.IsDir():
				return fmt.Errorf("cannot keep %s (not part of the store): the backup has a %s there", slash, kindOf(st.Mode()))
			default:
				return nil // the backup's file wins
			}
		}
		switch {
		case isDir:
			if err := root.Mkdir(rel, 0o700); err != nil {
				return err
			}
			kept[slash] = all || excluded
			uid, gid := owner(fi)
			dirs = append(dirs, dirMeta{rel, fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), fi.ModTime(), uid, gid})
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := root.Symlink(link, rel); err != nil {
				return err
			}
			if asRoot {
				uid, gid := owner(fi)
				return root.Lchown(rel, uid, gid)
			}
			return nil
		case d.Type().IsRegular():
			// The parent is a real directory inside tmp (realDir), so the
			// link lands in the new tree.
			return os.Link(p, filepath.Join(tmp, rel))
		default:
			return nil // sockets, FIFOs and devices are not kept
		}
	})
	return dirs, err
}

// realDir makes sure every component of dir inside root is a directory, not
// a symlink, creating missing ones.
func realDir(root *os.Root, dir string) error {
	if dir == "." {
		return nil
	}
	if err := realDir(root, filepath.Dir(dir)); err != nil {
		return err
	}
	st, err := root.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return root.Mkdir(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("the backup has a %s at %s", kindOf(st.Mode()), filepath.ToSlash(dir))
	}
	return nil
}

// applyDirs gives directories their modes, owners and times, deepest first.
func applyDirs(root *os.Root, dirs []dirMeta) error {
	sort.SliceStable(dirs, func(i, j int) bool {
		return strings.Count(dirs[i].name, string(filepath.Separator)) > strings.Count(dirs[j].name, string(filepath.Separator))
	})
	for _, d := range dirs {
		if err := setMeta(root, d.name, d.mode, d.mtime, d.uid, d.gid); err != nil {
			return err
		}
	}
	return nil
}

// setMeta sets the owner (when running as root), mode and times of name, in
// that order: chown clears set-id bits.
func setMeta(root *os.Root, name string, mode fs.FileMode, mtime time.Time, uid, gid int) error {
	if asRoot {
		if err := root.Lchown(name, uid, gid); err != nil {
			return err
		}
	}
	if err := root.Chmod(name, mode); err != nil {
		return err
	}
	return root.Chtimes(name, mtime, mtime)
}

// writeFile creates name (which must not exist) with r's content and fsyncs
// it.
func writeFile(ctx context.Context, root *os.Root, name string, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, fsx.CtxReader(ctx, r)); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDirs fsyncs every directory under dir, dir included.
func syncDirs(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return fsx.SyncDir(p)
	})
}
