package sqlite

// The WAL fast path: copy a WAL-mode database's file raw and lay the WAL's
// committed pages over it, instead of copying page by page through the
// (pure-Go, transpiled) backup API.
//
// Why the copy is exactly the snapshot of the read transaction B that Dump
// pins, step by step:
//
//  1. A PASSIVE checkpoint first keeps the WAL short. It takes no lock a
//     writer waits for.
//
//  2. Connection A takes the write lock (BEGIN IMMEDIATE; it never writes).
//     While A holds it no connection can append frames to the WAL or
//     restart it (both need that lock), nor run recovery, so the WAL file
//     and the wal-index (-shm) header are stable. A checkpoint may still run
//     but only reads the WAL. Under the lock we read the wal-index header
//     (mxFrame, the database size, salts, last checksum) and the WAL's first
//     mxFrame frames.
//
//  3. Still under A's lock, B begins its read transaction: with no commit
//     possible, B's snapshot is the one the header just read describes,
//     frame for frame. Then A rolls back; writers were stalled only for
//     steps 2 and 3 (the time is logged). Reading the WAL here, not after,
//     matters: when the WAL was fully checkpointed, B may read through
//     read-mark 0 (the database file alone), which lets the next writer
//     restart the WAL and overwrite its frames while B still runs. The
//     bytes read in step 2 are of the generation B's snapshot belongs to.
//
//  4. The WAL bytes are parsed as SQLite's recovery does (parseWAL) and must
//     agree with the wal-index header, or the fast path declines and the
//     backup API copies B's snapshot. While B's read transaction lasts, a
//     checkpoint backfills no frame past B's snapshot (it stops at the
//     smallest read mark in use, and on read-mark 0 at nothing), and the WAL
//     is not restarted under a reader of read-mark 1 or more. So during the
//     raw copy of the database file the only pages that may change are ones
//     a checkpoint copies from frames ≤ mxFrame, all of which are in the
//     overlay: they are overwritten afterwards with their version as of the
//     snapshot, whatever state the raw copy caught them in. Every other
//     page is as of the snapshot already. The copy is cut or extended to
//     the snapshot's database size (a checkpoint may truncate or extend the
//     file meanwhile; pages SQLite reads past the end are zeros, as the
//     extension is).
//
//  5. checkCopy then runs integrity_check on the copy, on either path.
//
// The fast path declines (Dump uses the backup API, and says why in a debug
// log) for a rollback-journal database, a source it cannot open read-write
// or take the write lock of, a WAL longer than walMaxBytes, a wal-index it
// cannot read, and a WAL that does not agree with the wal-index.

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// walMaxBytes is the most of the WAL the fast path reads under the write
// lock, while writers wait (a read from the page cache: a few ms at this
// size; 1 to 6 ms measured for the 2 to 4 MiB a writer's auto-checkpoint
// keeps it to, read and B's begin together); a longer one is copied with the
// backup API, which does not stall writers.
const walMaxBytes = 32 << 20

// copyChunk is how much of the database file one copy_file_range call
// copies before the copy fsyncs it and looks at its context again. The
// syncs are for the writers: a GiB copied in one burst is written back at
// once a moment later, and meanwhile every fsync on the disk (a writer's
// checkpoint) waits behind it: 300 to 900 ms on ext4 with a writer at 1000
// commits a second, against none over 30 ms when the copy syncs as it goes
// (with 64 MiB chunks one bench run still saw a 52 ms commit; 16 MiB kept
// them at 26-30 ms). The payload must be fsynced anyway (backup.Write does, and then finds
// nothing to write).
const copyChunk = 16 << 20

// walPin is what the fast path read under the write lock, for the read
// transaction it pinned.
type walPin struct {
	index walIndexHeader
	wal   []byte        // the WAL's header and first index.mxFrame frames
	held  time.Duration // how long writers could not commit
}

// isWAL says whether the database file at p is in WAL mode: its header's
// file format write and read versions (bytes 18 and 19) are 2.
func isWAL(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [100]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return false, nil // too short for a database: the backup API says what it is
	}
	return string(h[:16]) == "SQLite format 3\x00" && h[18] == 2 && h[19] == 2, nil
}

// pinUnderWriteLock is steps 1 to 3: it begins the read transaction on rd
// while a second connection holds the write lock, and returns what it read
// of the WAL meanwhile. A nil pin with a reason is the fast path declining
// before rd's transaction began. Once pinned, consistentAt is set and the
// test hook has run.
// name is the store's path for messages, dbPath the file it resolves to.
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

	var busy, logFrames, done int
	if err := a.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
		if err := ctxErr(); err != nil {
			return nil, time.Time{}, "", err
		}
		slog.DebugContext(ctx, "sqlite: passive checkpoint before the copy failed", slog.String("store", name), slog.String("error", err.Error()))
	}

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
	b, err := readPrefix(p, walIndexHeaderSize)
	if err != nil {
		return walIndexHeader{}, err
	}
	h, err := parseWALIndexHeader(b)
	if err != nil {
		return walIndexHeader{}, fmt.Errorf("%s: %w", p, err)
	}
	return h, nil
}

// readPrefix reads the first n bytes of the file at p.
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
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if h := beforeRawCopy.Load(); h != nil {
		(*h)()
	}
	// *os.File to *os.File, a chunk at a time: copy_file_range on Linux.
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := io.CopyN(out, in, copyChunk)
		if err != nil && !errors.Is(err, io.EOF) {
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
