package chunk

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// AlgorithmZstdFrames cuts a zstd stream at its frame boundaries (RFC 8878
// §3.1). A `files` archive is written as one frame per content-defined
// chunk of its tar, so a frame that did not change is a chunk the target
// already has, byte for byte; FastCDC over the compressed bytes finds the
// same frames only roughly, a chunk spanning several. A frame longer than
// Max (an archive written as one frame by an older version) is cut into
// pieces of Max bytes, so memory stays bounded.
const AlgorithmZstdFrames = "zstd-frames-v1"

// ZstdFrames cuts a zstd stream at its frames, in pieces of at most
// 256 KiB (a chunk travels in one NATS message, 1 MiB at most).
var ZstdFrames = Params{Algorithm: AlgorithmZstdFrames, Min: 1, Normal: 256 << 10, Max: 256 << 10}

const (
	zstdMagic          = 0xFD2FB528
	zstdSkippableMagic = 0x184D2A50 // to 0x184D2A5F
	zstdMaxHeader      = 18         // magic, descriptor, window, dictionary ID, content size
)

// frameCutter reads a zstd stream frame by frame into buf, which it emits
// as a chunk at the end of each frame or when it reaches max bytes.
type frameCutter struct {
	r   *bufio.Reader
	max int
	buf []byte
	off int64
	fn  func(Ref, []byte) error
}

func splitZstdFrames(r io.Reader, p Params, fn func(Ref, []byte) error) error {
	c := &frameCutter{r: bufio.NewReaderSize(r, 64<<10), max: p.Max, fn: fn}
	for {
		if _, err := c.r.Peek(1); errors.Is(err, io.EOF) {
			return c.emit()
		} else if err != nil {
			return err
		}
		if err := c.frame(); err != nil {
			return err
		}
		if err := c.emit(); err != nil {
			return err
		}
	}
}

// frame reads one frame: a zstd frame's header, blocks and checksum, or a
// skippable frame.
func (c *frameCutter) frame() error {
	start := c.off + int64(len(c.buf))
	h, err := c.header(4)
	if err != nil {
		return err
	}
	magic := binary.LittleEndian.Uint32(h)
	if magic&0xFFFFFFF0 == zstdSkippableMagic {
		h, err := c.header(4)
		if err != nil {
			return err
		}
		return c.copy(int64(binary.LittleEndian.Uint32(h)))
	}
	if magic != zstdMagic {
		return fmt.Errorf("chunk: byte %d is not the start of a zstd frame (magic %#08x): the payload is not a zstd stream", start, magic)
	}
	h, err = c.header(1)
	if err != nil {
		return err
	}
	desc := h[0]
	fcsFlag, single, checksum, dictFlag := desc>>6, desc&0x20 != 0, desc&0x04 != 0, desc&0x03
	n := [4]int{0, 2, 4, 8}[fcsFlag]
	if fcsFlag == 0 && single {
		n = 1
	}
	if !single {
		n++ // window descriptor
	}
	n += [4]int{0, 1, 2, 4}[dictFlag]
	if _, err := c.header(n); err != nil {
		return err
	}
	for {
		h, err := c.header(3)
		if err != nil {
			return err
		}
		bh := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		last, typ, size := bh&1 != 0, (bh>>1)&3, int64(bh>>3)
		switch typ {
		case 1: // RLE: one byte repeated size times
			size = 1
		case 3:
			return fmt.Errorf("chunk: zstd frame at byte %d has a reserved block type: the payload is corrupt", start)
		}
		if err := c.copy(size); err != nil {
			return err
		}
		if last {
			break
		}
	}
	if checksum {
		_, err = c.header(4)
	}
	return err
}

// header reads n small bytes into the chunk and returns them.
func (c *frameCutter) header(n int) ([]byte, error) {
	if len(c.buf)+n > c.max {
		if err := c.emit(); err != nil {
			return nil, err
		}
	}
	at := len(c.buf)
	if err := c.read(n); err != nil {
		return nil, err
	}
	return c.buf[at:], nil
}

// copy reads n bytes into the chunk, emitting it whenever it is full.
func (c *frameCutter) copy(n int64) error {
	for n > 0 {
		if len(c.buf) == c.max {
			if err := c.emit(); err != nil {
				return err
			}
		}
		k := int(min(n, int64(c.max-len(c.buf))))
		if err := c.read(k); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

func (c *frameCutter) read(n int) error {
	at := len(c.buf)
	c.buf = append(c.buf, make([]byte, n)...)
	if _, err := io.ReadFull(c.r, c.buf[at:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("chunk: zstd stream ends inside a frame at byte %d: %w (the payload is truncated)", c.off+int64(at), err)
	}
	return nil
}

func (c *frameCutter) emit() error {
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.fn(Ref{Offset: c.off, Length: len(c.buf), Hash: sha256.Sum256(c.buf)}, c.buf); err != nil {
		return err
	}
	c.off += int64(len(c.buf))
	c.buf = c.buf[:0]
	return nil
}
