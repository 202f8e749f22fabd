package chunk

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// frames compresses each part as its own zstd frame, as the files kind does.
func frames(t testing.TB, parts ...[]byte) (stream []byte, sizes []int) {
	t.Helper()
	for _, opts := range [][]zstd.EOption{{}, {zstd.WithEncoderCRC(false)}, {zstd.WithSingleSegment(true)}} {
		enc, err := zstd.NewWriter(nil, opts...)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			f := enc.EncodeAll(p, nil)
			stream = append(stream, f...)
			sizes = append(sizes, len(f))
		}
	}
	return stream, sizes
}

func TestZstdFramesAreTheChunks(t *testing.T) {
	parts := [][]byte{payload(1, 10_000), bytes.Repeat([]byte("a"), 70_000), {}, payload(2, 200_000), []byte("x")}
	stream, sizes := frames(t, parts...)
	// A skippable frame (user data) between the others is a chunk too.
	skip := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, 0x184D2A53), 5)
	skip = append(skip, "hello"...)
	stream = append(stream, skip...)
	sizes = append(sizes, len(skip))

	refs, err := List(bytes.NewReader(stream), ZstdFrames)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != len(sizes) {
		t.Fatalf("%d chunks, want one per frame (%d)", len(refs), len(sizes))
	}
	var off int64
	for i, r := range refs {
		if r.Offset != off || r.Length != sizes[i] {
			t.Errorf("chunk %d at %d, %d bytes; want the frame at %d, %d bytes", i, r.Offset, r.Length, off, sizes[i])
		}
		off += int64(sizes[i])
	}
	// The stream is still one valid zstd stream of the parts.
	dec, _ := zstd.NewReader(bytes.NewReader(stream))
	defer dec.Close()
	got, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.Repeat(bytes.Join(parts, nil), 3); !bytes.Equal(got, want) {
		t.Error("the frames decoded are not the parts")
	}
}

func TestALongFrameIsCutAtMax(t *testing.T) {
	stream, _ := frames(t, payload(3, 300_000))
	p := Params{Algorithm: AlgorithmZstdFrames, Min: 1, Normal: 64 << 10, Max: 64 << 10}
	var joined []byte
	err := Split(bytes.NewReader(stream), p, func(r Ref, b []byte) error {
		if r.Length > p.Max {
			t.Errorf("chunk of %d bytes, max %d", r.Length, p.Max)
		}
		joined = append(joined, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(joined, stream) {
		t.Error("the pieces joined are not the stream")
	}
}

func TestNotZstdIsRefusedSayingWhere(t *testing.T) {
	stream, sizes := frames(t, payload(4, 5000))
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"not zstd", []byte("PK\x03\x04 a zip file"), "byte 0 is not the start of a zstd frame"},
		{"garbage after a frame", append(append([]byte{}, stream[:sizes[0]]...), "junk"...), "is not the start of a zstd frame"},
		{"truncated", stream[:sizes[0]-3], "truncated"},
		{"reserved block type", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x05, 0x06, 0, 0}, "reserved block type"},
	} {
		_, err := List(bytes.NewReader(tc.in), ZstdFrames)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// FuzzZstdFrames: any input is cut without a panic into pieces that cover
// what was read, each at most Max.
func FuzzZstdFrames(f *testing.F) {
	stream, _ := frames(f, payload(5, 3000), []byte("abc"))
	f.Add(stream)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		p := Params{Algorithm: AlgorithmZstdFrames, Min: 1, Normal: 64, Max: 64}
		var joined []byte
		err := Split(bytes.NewReader(in), p, func(r Ref, b []byte) error {
			if r.Length > p.Max || r.Offset != int64(len(joined)) {
				t.Fatalf("chunk %+v after %d bytes", r, len(joined))
			}
			joined = append(joined, b...)
			return nil
		})
		if err == nil && !bytes.Equal(joined, in) {
			t.Fatal("no error, but the chunks are not the input")
		}
	})
}
