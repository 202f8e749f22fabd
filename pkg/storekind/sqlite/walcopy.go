package sqlite

// The WAL fast path: copy a WAL-mode database's file raw and lay the WAL's
// committed pages over it, instead of copying page by page through the
// (pure-Go, transpiled) backup API.
//
// Why the copy is exactly the snapshot of the read transaction B that Dump
// pins, step by step:
//
//  1. A PASSIVE checkpoint first keeps the WAL short. It takes no lock a
//     writer waits for. (The checkpoints here all run on connection C,
//     opened read-write for them.)
//
//  2. B begins its read transaction between two reads of the wal-index
//     (-shm) header (mxFrame, the database size, salts, last checksum, and
//     iChange, which every change of the header increments). B loads that
//     header when its first read begins, so when the two reads are equal,
//     byte for byte, B's snapshot is the one they describe, frame for
//     frame: no writer changed the header in between. When they differ (a
//     commit landed in the window, a fraction of a millisecond), B rolls
//     back and tries again, up to pinAttempts times. Writers never wait
//     for this step.
//
//  3. Then the WAL's first mxFrame frames are read. While B's read
//     transaction lasts they stay as they are, unless B reads through
//     read-mark 0 (the WAL was fully checkpointed, and B reads the database
//     file alone): then the next writer may restart the WAL and overwrite
//     its frames while B runs. The check of step 4 notices any frame of
//     another generation (its salts and checksums do not chain), and B
//     tries again; the database file itself does not change under
//     read-mark 0 (no checkpoint backfills while B holds it). B must also
//     still be in WAL mode.
//
//     Should every attempt fail (writers committing back to back the whole
//     time), the snapshot is pinned under the write lock instead:
//     connection A takes it (BEGIN IMMEDIATE; it never writes), so that no
//     connection can append frames to the WAL, restart it or run recovery;
//     the header and the WAL are read under it, B begins, and A rolls back.
//     Writers wait for that (the time is logged), and through SQLite's busy
//     back-off (sleeps of 1, 2, 5, 10, 15 ms...) up to twice as long: 20 to
//     50 ms in the benchmark, which is why it is only the fallback.
//
//     Once B is pinned, C checkpoints again, up to B's snapshot (no
//     further, while B lasts), before the copy writes anything. Otherwise
//     the first writer's automatic checkpoint does it inside a commit, and
//     its fsync of the database waits for the copy's data to be written
//     back (ext4's ordered mode): a 25 to 35 ms commit in the benchmark,
//     once per backup. After it a writer's checkpoint finds nothing it may
//     copy, and syncs nothing, until B ends.
//
//  4. The WAL bytes are parsed as SQLite's recovery does (parseWAL) and must
//     agree with the wal-index header: if not, step 2 tries again (on the
//     fallback, the fast path declines and the backup API copies B's
//     snapshot). While B's read transaction lasts, a checkpoint backfills
//     no frame past B's snapshot (it stops at the smallest read mark in
//     use, and on read-mark 0 at nothing), and the WAL is not restarted
//     under a reader of read-mark 1 or more. So during the raw copy of the
//     database file the only pages that may change are ones a checkpoint
//     copies from frames ≤ mxFrame, all of which are in the overlay: they
//     are overwritten afterwards with their version as of the snapshot,
//     whatever state the raw copy caught them in. Every other page is as of
//     the snapshot already. The copy is cut or extended to the snapshot's
//     database size (a checkpoint may truncate or extend the file
//     meanwhile; pages SQLite reads past the end are zeros, as the
//     extension is).
//
//  5. Once B has ended, C checkpoints what the writers committed during the
//     copy (B held it back), so that the next writer's automatic checkpoint
//     does not, inside its commit (8 to 10 ms in the benchmark).
//
//  6. checkCopy then runs integrity_check on the copy, on either path.
//
// The database file and its -shm are read through descriptors that stay
// open (heldFile): closing one would release this process's SQLite locks on
// the file. The -wal carries no lock, and is opened and closed.
//
// The fast path declines (Dump uses the backup API, and says why in a debug
// log) for a rollback-journal database, a source it cannot open read-write
// or checkpoint (or, on the fallback, take the write lock of), a WAL longer
// than walMaxBytes, a wal-index it cannot read, and, on the fallback, a WAL
// that does not agree with the wal-index.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// walMaxBytes is the most of the WAL the fast path reads into memory (on
// the fallback of step 3 under the write lock, while writers wait: 1 to
// 6 ms measured for the 2 to 4 MiB a writer's auto-checkpoint keeps it
// to); a longer one is copied with the backup API, which does not stall
// writers.
const walMaxBytes = 32 << 20

// pinAttempts is how many times step 2 tries to pin the snapshot between
// two equal reads of the wal-index header before it falls back to the
// write lock. One attempt takes a fraction of a millisecond, and fails only
// when a commit lands in it: against 1000 commits a second most succeed
// at once.
const pinAttempts = 100

// copyChunk is how much of the database file one copy_file_range call
// copies before the copy fsyncs it and looks at its context again. The
// syncs are for the writers: a GiB copied in one burst is written back at
// once a moment later, and meanwhile every fsync on the disk (a writer's
// checkpoint, or its commit with synchronous=FULL) waits behind it: 300 to
// 900 ms on ext4 with a writer at 1000 commits a second. Synced as it goes,
// the copy keeps such a wait to about one chunk's write-back (with 64 MiB
// chunks one bench run saw a 52 ms commit; 16 MiB, 20 to 30 ms). The
// payload must be fsynced anyway (backup.Write does, and then finds nothing
// to write).
const copyChunk = 16 << 20

// betweenHeaderReads, when set (by tests), is called in each attempt of
// step 2 after the first read of the wal-index header and before rd's
// snapshot is taken, with the attempt's number (from 1).
var betweenHeaderReads atomic.Pointer[func(attempt int)]

// walPin is what the fast path read of the WAL for the read transaction it
// pinned.
type walPin struct {
	index    walIndexHeader
	wal      []byte        // the WAL's header and first index.mxFrame frames
	attempts int           // how many tries step 2 took (0: none)
	held     time.Duration // on the fallback, how long writers could not commit
}

// pinSnapshot is steps 1 to 3: it begins the read transaction on rd and
// returns what it read of the WAL for its snapshot, which agrees with it.
// ck is connection C, read-write, for the checkpoints. A nil pin with a
// reason is the fast path declining before rd's transaction began, unless
// consistentAt is set: then rd's transaction has begun and the backup API
// copies its snapshot. Once pinned, consistentAt is set and the test hook
// has run. name is the store's path for messages, dbPath the file it
// resolves to.
func pinSnapshot(ctx context.Context, name, dbPath string, ck *sql.DB, rd *sql.Conn) (pin *walPin, consistentAt time.Time, reason string, err error) {
	if reason, err := checkpoint(ctx, name, ck); reason != "" || err != nil {
		return nil, time.Time{}, reason, err
	}
	for attempt := 1; attempt <= pinAttempts; attempt++ {
		pin, consistentAt, reason, retry, err := pinBetweenHeaders(ctx, name, dbPath, rd, attempt)
		if err != nil || reason != "" {
			return nil, time.Time{}, reason, err
		}
		if !retry {
			pin.attempts = attempt
			if h := snapshotPinned.Load(); h != nil {
				(*h)()
			}
			if _, err := checkpoint(ctx, name, ck); err != nil {
				return nil, time.Time{}, "", err
			}
			return pin, consistentAt, "", nil
		}
	}
	slog.DebugContext(ctx, "sqlite: the wal-index header changed in every attempt to pin a snapshot; taking the write lock",
		slog.String("store", name), slog.Int("attempts", pinAttempts))
	pin, consistentAt, reason, err = pinUnderWriteLock(ctx, name, dbPath, rd)
	if pin != nil && pin.index.mxFrame > 0 {
		if why := pin.index.agrees(parseWAL(pin.wal)); why != "" {
			return nil, consistentAt, why, nil
		}
	}
	if pin != nil {
		if _, err := checkpoint(ctx, name, ck); err != nil {
			return nil, time.Time{}, "", err
		}
	}
	return pin, consistentAt, reason, err
}

// openCheckpointer opens connection C on the database at dbPath:
// read-write (it never creates the database), one connection kept open
// for the checkpoints of one copy.
func openCheckpointer(dbPath string) (*sql.DB, error) {
	ck, err := sql.Open("sqlite", dsn(dbPath, "mode=rw"))
	if err != nil {
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	return ck, nil
}

// checkpoint runs a PASSIVE checkpoint on connection C. It needs what the
// write lock of step 3's fallback needs, write access to the database, its
// WAL and its wal-index, so a checkpoint that fails (SQLITE_READONLY, say;
// one that another checkpoint blocks only says so in its result) is a
// reason to decline the fast path, and one that the context cancelled an
// error.
func checkpoint(ctx context.Context, name string, ck *sql.DB) (reason string, err error) {
	var busy, logFrames, done int
	if err := ck.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("sqlite: copy %s: %w", name, ctx.Err())
		}
		return "checkpoint: " + err.Error(), nil
	}
	return "", nil
}

// pinBetweenHeaders is one attempt of steps 2 and 3: rd's read transaction
// begun between two equal reads of the wal-index header, and the WAL's
// committed frames read after and checked against that header. retry says
// the attempt failed (rd's transaction is ended); a reason declines the
// fast path (rd's transaction is ended too).
func pinBetweenHeaders(ctx context.Context, name, dbPath string, rd *sql.Conn, attempt int) (pin *walPin, consistentAt time.Time, reason string, retry bool, err error) {
	if _, err := rd.ExecContext(ctx, "BEGIN"); err != nil {
		return nil, time.Time{}, "", false, fmt.Errorf("sqlite: read %s: %w", name, err)
	}
	pinned := false
	defer func() {
		if !pinned {
			_, _ = rd.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	shm := dbPath + "-shm"
	// A header that cannot be read or parsed is one a writer is rewriting,
	// or one no connection has set up yet: rd's read sets it up, and the
	// next attempt reads it again (the fallback says why, should it never
	// parse).
	before, rerr := readHeld(shm, walIndexHeaderSize)
	if h := betweenHeaderReads.Load(); h != nil {
		(*h)(attempt)
	}
	consistentAt, err = snapshotRead(ctx, rd, name)
	if err != nil {
		return nil, time.Time{}, "", false, err
	}
	if rerr != nil {
		return nil, time.Time{}, "", true, nil
	}
	index, err := parseWALIndexHeader(before)
	if err != nil {
		return nil, time.Time{}, "", true, nil
	}
	after, err := readHeld(shm, walIndexHeaderSize/2)
	if err != nil || !bytes.Equal(before[:walIndexHeaderSize/2], after) {
		return nil, time.Time{}, "", true, nil
	}
	var mode string
	if err := rd.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, time.Time{}, "", false, fmt.Errorf("sqlite: read %s: %w", name, err)
	}
	if mode != "wal" {
		return nil, time.Time{}, "journal mode is " + mode, false, nil
	}
	var wal []byte
	if index.mxFrame > 0 {
		size := walHeaderSize + int64(index.mxFrame)*int64(walFrameHeaderSize+index.pageSize)
		if size > walMaxBytes {
			return nil, time.Time{}, fmt.Sprintf("the WAL holds %d bytes of committed frames, more than the %d the fast path reads", size, walMaxBytes), false, nil
		}
		if wal, err = readPrefix(dbPath+"-wal", size); err != nil {
			return nil, time.Time{}, "", true, nil // restarted and shorter, under read-mark 0
		}
		if index.agrees(parseWAL(wal)) != "" {
			return nil, time.Time{}, "", true, nil // restarted under read-mark 0
		}
	}
	pinned = true
	return &walPin{index: index, wal: wal}, consistentAt, "", false, nil
}

// held is every database and wal-index file the fast path reads, each on
// one read-only descriptor: see heldFile.
var held struct {
	sync.Mutex
	files  []heldEntry
	copies int // copies in progress, between beginRaw and endRaw
}

type heldEntry struct {
	f  *os.File
	fi os.FileInfo // f's, for os.SameFile; nil if it could not be had
}

// heldFile returns a read-only descriptor on the file at p, a database or
// its -shm: one per file (by device and inode), shared, so read it only at
// explicit offsets (ReadAt), and never close it: endRaw does, when that is
// safe.
//
// SQLite's locks on a database and its wal-index are POSIX advisory locks,
// and closing any descriptor of a file releases every such lock the
// process holds on it, whichever descriptor took it (fcntl(2); "How To
// Corrupt An SQLite Database File", 2.2). A copy that opened the database
// or its -shm and closed it again while connections of this process held
// locks on it silently dropped them: the read transaction that pins the
// snapshot (another process could then checkpoint past it), and any other
// connection of the process to that database (lifeboat-self's services,
// the benchmark's writer), after which another process could take the
// database for its own: seen as the wal-index vanishing and the database
// malformed after a sqlite3 CLI opened it once a backup had run.
func heldFile(p string) (*os.File, error) {
	held.Lock()
	defer held.Unlock()
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	for _, e := range held.files {
		if e.fi != nil && os.SameFile(e.fi, fi) {
			return e.f, nil
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	fi, err = f.Stat()
	if err != nil {
		fi = nil // kept, not closed: SQLite may hold locks on the file
	}
	held.files = append(held.files, heldEntry{f: f, fi: fi})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// beginRaw and endRaw bracket a copy's use of held descriptors, around its
// connections to the database: endRaw runs after they have closed. Once no
// copy is in progress, endRaw closes every held descriptor that no other
// descriptor of this process shares: with none, the process holds no lock
// on the file (a lock lives only as long as a descriptor), so closing it
// releases nothing, and a database is not kept open (its volume busy) for
// longer than its backup. One that another descriptor shares, a
// connection of this process to the database, stays open for the next
// copy, until that connection has gone or the file has been deleted.
func beginRaw() {
	held.Lock()
	held.copies++
	held.Unlock()
}

func endRaw() {
	held.Lock()
	defer held.Unlock()
	if held.copies--; held.copies > 0 {
		return
	}
	kept := held.files[:0]
	for _, e := range held.files {
		if e.fi == nil || (!unlinked(e.f) && sharedInProcess(e.f, e.fi)) {
			kept = append(kept, e)
			continue
		}
		e.f.Close()
	}
	clear(held.files[len(kept):])
	held.files = kept
}

// isWAL says whether the database file at p is in WAL mode: its header's
// file format write and read versions (bytes 18 and 19) are 2.
func isWAL(p string) (bool, error) {
	f, err := heldFile(p)
	if err != nil {
		return false, err
	}
	var h [100]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return false, nil // too short for a database: the backup API says what it is
	}
	return string(h[:16]) == "SQLite format 3\x00" && h[18] == 2 && h[19] == 2, nil
}

// pinUnderWriteLock is step 3's fallback: it begins the read transaction on
// rd while a second connection holds the write lock, and returns what it
// read of the WAL meanwhile. A nil pin with a reason is the fast path
// declining before rd's transaction began. Once pinned, consistentAt is set
// and the test hook has run.
func pinUnderWriteLock(ctx context.Context, name, dbPath string, rd *sql.Conn) (pin *walPin, consistentAt time.Time, reason string, err error) {
	// A cancelled context ends the dump; any other failure before the
	// snapshot is pinned only declines the fast path.
	ctxErr := func() error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sqlite: copy %s: %w", name, err)
		}
		return nil
	}
	// mode=rw: the write lock needs a read-write connection; it never
	// creates the database, and never writes.
	wdb, err := sql.Open("sqlite", dsn(dbPath, "mode=rw"))
	if err != nil {
		return nil, time.Time{}, "open read-write: " + err.Error(), nil
	}
	defer wdb.Close()
	a, err := wdb.Conn(ctx)
	if err != nil {
		return nil, time.Time{}, "open read-write: " + err.Error(), ctxErr()
	}
	defer a.Close()

	if _, err := a.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return nil, time.Time{}, "take the write lock: " + err.Error(), ctxErr()
	}
	locked := time.Now()
	unlocked := false
	unlock := func() error {
		if unlocked {
			return nil
		}
		unlocked = true
		_, err := a.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return err
	}
	defer func() { _ = unlock() }()

	var mode string
	if err := a.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, time.Time{}, "journal_mode: " + err.Error(), ctxErr()
	}
	if mode != "wal" {
		return nil, time.Time{}, "journal mode is " + mode, nil
	}
	index, err := readWALIndexHeader(dbPath + "-shm")
	if err != nil {
		return nil, time.Time{}, err.Error(), nil
	}
	var wal []byte
	if index.mxFrame > 0 {
		size := walHeaderSize + int64(index.mxFrame)*int64(walFrameHeaderSize+index.pageSize)
		if size > walMaxBytes {
			return nil, time.Time{}, fmt.Sprintf("the WAL holds %d bytes of committed frames, more than the %d the fast path reads while writers wait", size, walMaxBytes), nil
		}
		if wal, err = readPrefix(dbPath+"-wal", size); err != nil {
			return nil, time.Time{}, err.Error(), nil
		}
	}

	consistentAt, err = beginRead(ctx, rd, name)
	if err != nil {
		return nil, time.Time{}, "", err
	}
	if err := unlock(); err != nil {
		return nil, time.Time{}, "", fmt.Errorf("sqlite: release the write lock on %s: %w", name, err)
	}
	return &walPin{index: index, wal: wal, held: time.Since(locked)}, consistentAt, "", nil
}

// readWALIndexHeader reads the wal-index header from the -shm file at p.
func readWALIndexHeader(p string) (walIndexHeader, error) {
	b, err := readHeld(p, walIndexHeaderSize)
	if err != nil {
		return walIndexHeader{}, err
	}
	h, err := parseWALIndexHeader(b)
	if err != nil {
		return walIndexHeader{}, fmt.Errorf("%s: %w", p, err)
	}
	return h, nil
}

// readHeld reads the first n bytes of the file at p, a database or its
// wal-index, through its held descriptor (heldFile).
func readHeld(p string, n int64) ([]byte, error) {
	f, err := heldFile(p)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("read %d bytes of %s: %w", n, p, err)
	}
	return b, nil
}

// readPrefix reads the first n bytes of the file at p, opened and closed
// again: only for a WAL file, on which SQLite takes no lock (see heldFile).
func readPrefix(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("read %d bytes of %s: %w", n, p, err)
	}
	return b, nil
}

// copyWithOverlay is step 4: the raw copy of the database file at src into
// dst, then the snapshot's pages from the WAL over it, at its size. It runs
// inside the pinned read transaction.
func copyWithOverlay(ctx context.Context, src, dst string, index walIndexHeader, s walSnapshot) error {
	in, err := heldFile(src)
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if h := beforeRawCopy.Load(); h != nil {
		(*h)()
	}
	// A chunk at a time, at explicit offsets (the held descriptor is
	// shared): copy_file_range on Linux.
	for off := int64(0); ; off += copyChunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := copyRange(out, in, off, copyChunk)
		if err != nil {
			return err
		}
		if err := out.Sync(); err != nil { // see copyChunk
			return err
		}
		if n < copyChunk {
			break
		}
	}

	pageSize := int64(index.pageSize)
	var size int64
	if index.mxFrame == 0 {
		// No committed frame: the file is the snapshot, and no checkpoint
		// changed it meanwhile. Its size is the header's when that is valid.
		size, err = fileDBSize(out)
		if err != nil {
			return err
		}
	} else {
		pgnos := make([]uint32, 0, len(s.pages))
		for pgno := range s.pages {
			if pgno <= s.dbPages {
				pgnos = append(pgnos, pgno)
			}
		}
		slices.Sort(pgnos)
		for _, pgno := range pgnos {
			if _, err := out.WriteAt(s.pages[pgno], int64(pgno-1)*pageSize); err != nil {
				return err
			}
		}
		size = int64(s.dbPages) * pageSize
	}
	if err := out.Truncate(size); err != nil {
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// fileDBSize is the size of the database in the file f, by its header: the
// in-header database size when it is valid (the version-valid-for number
// matches the change counter) and within the file, else the file's size.
// (The wal-index has no page size before the WAL's first frame.)
func fileDBSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	var h [100]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return fi.Size(), nil
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	pages := int64(binary.BigEndian.Uint32(h[28:]))
	if pages == 0 || binary.BigEndian.Uint32(h[24:]) != binary.BigEndian.Uint32(h[92:]) || pages*pageSize > fi.Size() {
		return fi.Size(), nil
	}
	return pages * pageSize, nil
}

// resolve is the database file SQLite opens for p: it follows symbolic
// links, and the -wal and -shm files are beside the target.
func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}
