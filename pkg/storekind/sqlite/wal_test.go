package sqlite

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// realWAL makes a WAL database at p (page size 1024, never checkpointed)
// with commits transactions of rows rows each, and returns its -wal
// file and the wal-index header after each commit.
func realWAL(t testing.TB, p string, commits, rows int) (*sql.DB, []byte, []walIndexHeader) {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(p, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		"PRAGMA page_size=1024", "PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var marks []walIndexHeader
	for range commits {
		if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
			INSERT INTO t(v) SELECT randomblob(300) FROM n`, rows); err != nil {
			t.Fatal(err)
		}
		h, err := readWALIndexHeader(p + "-shm")
		if err != nil {
			t.Fatal(err)
		}
		marks = append(marks, h)
	}
	wal, err := os.ReadFile(p + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return db, wal, marks
}

// frameOffset is where frame i (1-based) of a WAL with page size ps starts.
func frameOffset(i uint32, ps int) int {
	return walHeaderSize + int(i-1)*(walFrameHeaderSize+ps)
}

// synthWAL is the header of a WAL with no frames.
func synthWAL(magic uint32, ps int) []byte {
	h := make([]byte, walHeaderSize)
	binary.BigEndian.PutUint32(h[0:], magic)
	binary.BigEndian.PutUint32(h[4:], walFormatVersion)
	binary.BigEndian.PutUint32(h[8:], uint32(ps))
	binary.BigEndian.PutUint32(h[16:], 0x01020304)
	binary.BigEndian.PutUint32(h[20:], 0x0a0b0c0d)
	c0, c1 := walChecksum(magic == walMagicBE, h[:24], 0, 0)
	binary.BigEndian.PutUint32(h[24:], c0)
	binary.BigEndian.PutUint32(h[28:], c1)
	return h
}

// appendFrame appends a frame to wal that chains from its last frame:
// valid salts and checksum, commit the database size or 0.
func appendFrame(wal []byte, pgno, commit uint32, page []byte) []byte {
	bigEndian := binary.BigEndian.Uint32(wal) == walMagicBE
	ps := int(binary.BigEndian.Uint32(wal[8:]))
	c0, c1 := binary.BigEndian.Uint32(wal[24:]), binary.BigEndian.Uint32(wal[28:])
	if len(wal) > walHeaderSize {
		last := wal[len(wal)-ps-walFrameHeaderSize:]
		c0, c1 = binary.BigEndian.Uint32(last[16:]), binary.BigEndian.Uint32(last[20:])
	}
	fh := make([]byte, walFrameHeaderSize)
	binary.BigEndian.PutUint32(fh[0:], pgno)
	binary.BigEndian.PutUint32(fh[4:], commit)
	copy(fh[8:16], wal[16:24])
	c0, c1 = walChecksum(bigEndian, fh[:8], c0, c1)
	c0, c1 = walChecksum(bigEndian, page, c0, c1)
	binary.BigEndian.PutUint32(fh[16:], c0)
	binary.BigEndian.PutUint32(fh[20:], c1)
	return append(append(append([]byte(nil), wal...), fh...), page...)
}

func TestParseWAL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.db")
	_, wal, marks := realWAL(t, p, 5, 20)
	last := marks[len(marks)-1]
	ps := last.pageSize
	if ps != 1024 || last.mxFrame < 10 {
		t.Fatalf("wal-index says page size %d, %d frames", ps, last.mxFrame)
	}
	if s := parseWAL(wal); last.agrees(s) != "" {
		t.Fatalf("the whole WAL: %s", last.agrees(s))
	}
	page := bytes.Repeat([]byte{7}, ps)
	corrupt := func(off int) []byte {
		b := bytes.Clone(wal)
		b[off] ^= 0x40
		return b
	}
	for _, tc := range []struct {
		name   string
		wal    []byte
		frames uint32 // the committed prefix parseWAL must keep
	}{
		{"empty", nil, 0},
		{"header only", wal[:walHeaderSize], 0},
		{"bad magic", corrupt(3), 0},
		{"bad header checksum", corrupt(12), 0},
		{"truncated last frame", wal[:len(wal)-10], marks[3].mxFrame},
		{"last frame header only", wal[:frameOffset(last.mxFrame, ps)+walFrameHeaderSize], marks[3].mxFrame},
		{"bad checksum mid-file", corrupt(frameOffset(marks[2].mxFrame, ps) + walFrameHeaderSize + 100), marks[1].mxFrame},
		{"bad checksum in the first frame", corrupt(frameOffset(1, ps) + walFrameHeaderSize), 0},
		{"stale salt mid-file", corrupt(frameOffset(marks[1].mxFrame+1, ps) + 9), marks[1].mxFrame},
		{"page number 0", func() []byte {
			b := bytes.Clone(wal)
			binary.BigEndian.PutUint32(b[frameOffset(marks[0].mxFrame+1, ps):], 0)
			return b
		}(), marks[0].mxFrame},
		{"non-commit tail", appendFrame(appendFrame(wal, 2, 0, page), 3, 0, page), last.mxFrame},
		{"non-commit tail then a commit", appendFrame(appendFrame(wal, 2, 0, page), 3, last.nPage, page), last.mxFrame + 2},
		{"garbage after the last frame", append(bytes.Clone(wal), bytes.Repeat([]byte{0xff}, 3*ps)...), last.mxFrame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := parseWAL(tc.wal)
			if s.frames != tc.frames {
				t.Fatalf("parsed %d committed frames, want %d", s.frames, tc.frames)
			}
			for i, h := range marks {
				if h.mxFrame == tc.frames {
					if why := h.agrees(s); why != "" {
						t.Fatalf("the parse does not match the wal-index after commit %d: %s", i+1, why)
					}
				}
			}
			if tc.frames == 0 && s.pages != nil {
				t.Fatalf("an empty WAL has %d pages", len(s.pages))
			}
		})
	}
}

// TestParseWALOverlayIsTheDatabase lays the parsed WAL over the database
// file as the fast path does, and finds the database SQLite sees.
func TestParseWALOverlayIsTheDatabase(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.db")
	db, _, marks := realWAL(t, p, 4, 30)
	// Shrink it too: pages past the new end stay in the WAL.
	if _, err := db.Exec("DELETE FROM t WHERE id > 40"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("VACUUM"); err != nil {
		t.Fatal(err)
	}
	h, err := readWALIndexHeader(p + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(p + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if h.nPage >= marks[len(marks)-1].nPage {
		t.Fatalf("VACUUM did not shrink the database: %d pages, was %d", h.nPage, marks[len(marks)-1].nPage)
	}
	s := parseWAL(wal)
	if why := h.agrees(s); why != "" {
		t.Fatal(why)
	}
	dst := filepath.Join(t.TempDir(), "copy.db")
	if err := copyWithOverlay(t.Context(), p, dst, h, s); err != nil {
		t.Fatal(err)
	}
	c, err := sql.Open("sqlite", dsn(dst, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ok string
	var n, sum int
	if err := c.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check: %q, %v", ok, err)
	}
	if err := c.QueryRow("SELECT count(*), sum(id) FROM t").Scan(&n, &sum); err != nil {
		t.Fatal(err)
	}
	if n != 40 || sum != 40*41/2 {
		t.Fatalf("the copy holds %d rows summing to %d, want ids 1..40", n, sum)
	}
}

// TestParseWALAfterRestart: once a WAL is fully checkpointed, the next
// writer starts it over with new salts, and the frames of the last
// generation after the new ones are not part of the log.
func TestParseWALAfterRestart(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.db")
	db, old, _ := realWAL(t, p, 5, 20)
	var busy, logFrames, done int
	if err := db.QueryRow("PRAGMA wal_checkpoint(RESTART)").Scan(&busy, &logFrames, &done); err != nil || busy != 0 {
		t.Fatalf("checkpoint: busy %d, %v", busy, err)
	}
	if _, err := db.Exec("INSERT INTO t(v) VALUES (randomblob(10))"); err != nil {
		t.Fatal(err)
	}
	h, err := readWALIndexHeader(p + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	wal, err := os.ReadFile(p + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if len(wal) != len(old) || h.mxFrame == 0 || frameOffset(h.mxFrame+1, h.pageSize) >= len(wal) || bytes.Equal(wal[16:24], old[16:24]) {
		t.Fatalf("the WAL was not restarted in place: %d bytes (was %d), %d frames", len(wal), len(old), h.mxFrame)
	}
	s := parseWAL(wal)
	if why := h.agrees(s); why != "" {
		t.Fatal(why)
	}
}

func TestParseWALIndexHeader(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.db")
	realWAL(t, p, 1, 5)
	shm, err := os.ReadFile(p + "-shm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseWALIndexHeader(shm); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"short", shm[:50]},
		{"copies differ", func() []byte { b := bytes.Clone(shm); b[48+16]++; return b }()},
		{"bad checksum", func() []byte { b := bytes.Clone(shm); b[16]++; b[48+16]++; return b }()},
		{"not initialised", func() []byte { b := bytes.Clone(shm); b[12], b[48+12] = 0, 0; return b }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseWALIndexHeader(tc.b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzParseWAL(f *testing.F) {
	// Seeds made here rather than by SQLite: a fuzz worker runs this setup,
	// and SQLite instrumented for coverage takes it minutes.
	const ps = 512
	wal := synthWAL(walMagicLE, ps)
	for i := range uint32(6) {
		commit := uint32(0)
		if i%2 == 1 {
			commit = 4 + i
		}
		wal = appendFrame(wal, 1+i%4, commit, bytes.Repeat([]byte{byte(i)}, ps))
	}
	f.Add(wal)
	f.Add(wal[:frameOffset(5, ps)+7])
	f.Add(synthWAL(walMagicBE, ps))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := parseWAL(b)
		if s.frames == 0 {
			if s.pages != nil || s.dbPages != 0 {
				t.Fatalf("no frames but %d pages, database of %d", len(s.pages), s.dbPages)
			}
			return
		}
		end := frameOffset(s.frames+1, s.pageSize)
		if end > len(b) || s.dbPages == 0 || len(s.pages) == 0 || len(s.pages) > int(s.frames) {
			t.Fatalf("%d frames of %d bytes from %d bytes, %d pages, database of %d", s.frames, s.pageSize, len(b), len(s.pages), s.dbPages)
		}
		for pgno, page := range s.pages {
			if pgno == 0 || len(page) != s.pageSize {
				t.Fatalf("page %d of %d bytes", pgno, len(page))
			}
		}
		// The committed prefix alone parses to the same.
		if again := parseWAL(b[:end]); again.frames != s.frames || again.cksum != s.cksum {
			t.Fatalf("the prefix parses to %d frames, the whole to %d", again.frames, s.frames)
		}
	})
}

// TestSynthWAL checks the fuzz seeds' builder against the parser.
func TestSynthWAL(t *testing.T) {
	for _, magic := range []uint32{walMagicLE, walMagicBE} {
		wal := appendFrame(appendFrame(synthWAL(magic, 512), 1, 0, make([]byte, 512)), 2, 2, make([]byte, 512))
		if s := parseWAL(wal); s.frames != 2 || s.dbPages != 2 || len(s.pages) != 2 || s.bigEndian != (magic == walMagicBE) {
			t.Errorf("magic %#x: parsed %+v", magic, s)
		}
	}
}
