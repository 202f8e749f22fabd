package sqlite

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// The WAL file format, https://www.sqlite.org/fileformat2.html#walformat.
const (
	walMagicLE         = 0x377f0682 // checksums over little-endian words
	walMagicBE         = 0x377f0683 // checksums over big-endian words
	walFormatVersion   = 3007000
	walHeaderSize      = 32
	walFrameHeaderSize = 24
)

// walSnapshot is what the committed prefix of a WAL file holds: the frames
// up to its last valid commit frame.
type walSnapshot struct {
	// frames is the number of frames in the committed prefix (SQLite's
	// mxFrame); 0 when the WAL holds no valid commit.
	frames uint32
	// pageSize is the page size the WAL header records.
	pageSize int
	// bigEndian is whether the checksums are over big-endian words.
	bigEndian bool
	// salt is salt-1 and salt-2 as the header holds them.
	salt [8]byte
	// dbPages is the database's size in pages after the last commit.
	dbPages uint32
	// cksum is the cumulative checksum of the last commit frame.
	cksum [2]uint32
	// pages is each page's latest content in the committed prefix, slices
	// of the parsed bytes. It may hold pages past dbPages (the database
	// shrank); they are not part of the database.
	pages map[uint32][]byte
}

// parseWAL reads a WAL file's committed prefix as SQLite's recovery does: a
// header with a valid magic, version, page size and checksum, then frames
// while each carries the header's salts, a non-zero page number and the
// cumulative checksum chained from the one before; it stops at the first
// frame that does not, and keeps the frames up to the last commit frame
// (one with a database size) before that. Frames after the last commit are
// a transaction that never committed. A WAL with no valid header or no
// valid commit frame is empty: frames is 0.
func parseWAL(b []byte) walSnapshot {
	var s walSnapshot
	if len(b) < walHeaderSize {
		return s
	}
	h := b[:walHeaderSize]
	switch binary.BigEndian.Uint32(h[0:]) {
	case walMagicLE:
	case walMagicBE:
		s.bigEndian = true
	default:
		return s
	}
	ps := binary.BigEndian.Uint32(h[8:])
	if binary.BigEndian.Uint32(h[4:]) != walFormatVersion || ps < 512 || ps > 65536 || ps&(ps-1) != 0 {
		return s
	}
	c0, c1 := walChecksum(s.bigEndian, h[:24], 0, 0)
	if c0 != binary.BigEndian.Uint32(h[24:]) || c1 != binary.BigEndian.Uint32(h[28:]) {
		return s
	}
	s.pageSize = int(ps)
	copy(s.salt[:], h[16:24])

	frameSize := walFrameHeaderSize + s.pageSize
	var n uint32
	for off := walHeaderSize; off+frameSize <= len(b); off += frameSize {
		fh := b[off : off+walFrameHeaderSize]
		page := b[off+walFrameHeaderSize : off+frameSize]
		if binary.BigEndian.Uint32(fh[0:]) == 0 || !bytes.Equal(fh[8:16], s.salt[:]) {
			break
		}
		c0, c1 = walChecksum(s.bigEndian, fh[:8], c0, c1)
		c0, c1 = walChecksum(s.bigEndian, page, c0, c1)
		if c0 != binary.BigEndian.Uint32(fh[16:]) || c1 != binary.BigEndian.Uint32(fh[20:]) {
			break
		}
		n++
		if size := binary.BigEndian.Uint32(fh[4:]); size != 0 {
			s.frames, s.dbPages, s.cksum = n, size, [2]uint32{c0, c1}
		}
	}
	if s.frames == 0 {
		return walSnapshot{}
	}
	s.pages = make(map[uint32][]byte)
	for i := range int(s.frames) {
		off := walHeaderSize + i*frameSize
		pgno := binary.BigEndian.Uint32(b[off:])
		s.pages[pgno] = b[off+walFrameHeaderSize : off+frameSize] // a later frame replaces an earlier
	}
	return s
}

// walChecksum continues SQLite's WAL checksum (s0, s1) over b, whose length
// is a multiple of 8: two accumulators over 32-bit words, big- or
// little-endian as the WAL's magic says.
func walChecksum(bigEndian bool, b []byte, s0, s1 uint32) (uint32, uint32) {
	if bigEndian {
		for ; len(b) >= 8; b = b[8:] {
			s0 += binary.BigEndian.Uint32(b) + s1
			s1 += binary.BigEndian.Uint32(b[4:]) + s0
		}
		return s0, s1
	}
	for ; len(b) >= 8; b = b[8:] {
		s0 += binary.LittleEndian.Uint32(b) + s1
		s1 += binary.LittleEndian.Uint32(b[4:]) + s0
	}
	return s0, s1
}

// walIndexHeaderSize is how much of the -shm file parseWALIndexHeader
// reads: the wal-index header's two copies.
const walIndexHeaderSize = 96

// walIndexHeader is the wal-index (-shm) header: the WAL's state as every
// connection sees it, rewritten by each commit under the write lock.
type walIndexHeader struct {
	mxFrame    uint32 // frames committed, the last a commit frame
	nPage      uint32 // database size in pages after that commit
	pageSize   int
	bigEndian  bool // the WAL's checksums are over big-endian words
	frameCksum [2]uint32
	salt       [8]byte // as the WAL header holds them
}

var nativeBigEndian = binary.NativeEndian.Uint16([]byte{0, 1}) == 1

// parseWALIndexHeader reads the header at the start of a -shm file (in the
// host's byte order, with its own checksum, stored twice). It refuses a
// header whose copies differ or that is not initialised: one a writer is
// rewriting, or that needs SQLite's recovery.
func parseWALIndexHeader(b []byte) (walIndexHeader, error) {
	var h walIndexHeader
	if len(b) < walIndexHeaderSize {
		return h, errors.New("wal-index header is short")
	}
	h1, h2 := b[:48], b[48:96]
	if !bytes.Equal(h1, h2) {
		return h, errors.New("wal-index header copies differ")
	}
	ne := binary.NativeEndian
	if v := ne.Uint32(h1[0:]); v != walFormatVersion {
		return h, fmt.Errorf("wal-index version %d", v)
	}
	if h1[12] != 1 {
		return h, errors.New("wal-index is not initialised")
	}
	c0, c1 := walChecksum(nativeBigEndian, h1[:40], 0, 0)
	if c0 != ne.Uint32(h1[40:]) || c1 != ne.Uint32(h1[44:]) {
		return h, errors.New("wal-index header checksum mismatch")
	}
	h.bigEndian = h1[13] != 0
	h.pageSize = int(ne.Uint16(h1[14:]))
	if h.pageSize == 1 {
		h.pageSize = 65536 // SQLite stores 65536 as 1 in this u16
	}
	h.mxFrame = ne.Uint32(h1[16:])
	h.nPage = ne.Uint32(h1[20:])
	h.frameCksum = [2]uint32{ne.Uint32(h1[24:]), ne.Uint32(h1[28:])}
	copy(h.salt[:], h1[32:40])
	return h, nil
}

// agrees says why the WAL's committed prefix s is not the state the
// wal-index header h describes, or "" when it is. They are written
// independently (the WAL by the committing writer, the header after it), so
// agreement rules out a misread WAL and a writer that died between the two.
func (h walIndexHeader) agrees(s walSnapshot) string {
	switch {
	case s.frames != h.mxFrame:
		return fmt.Sprintf("the WAL's committed prefix is %d frames, the wal-index says %d", s.frames, h.mxFrame)
	case s.salt != h.salt || s.bigEndian != h.bigEndian || s.pageSize != h.pageSize:
		return "the WAL header does not match the wal-index"
	case s.dbPages != h.nPage:
		return fmt.Sprintf("the WAL's last commit makes the database %d pages, the wal-index says %d", s.dbPages, h.nPage)
	case s.cksum != h.frameCksum:
		return "the WAL's last commit frame checksum does not match the wal-index"
	}
	return ""
}
