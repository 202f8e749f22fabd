package files

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"lifeboat.dev/pkg/chunk"
)

// framedWriter compresses the tar stream as one zstd frame per chunk of
// the uncompressed tar, cut by content (chunk.Content). Concatenated zstd
// frames are one valid .tar.zst, and a chunk that did not change between
// two backups compresses to the same frame, so sync sends about what
// changed: a stream compressed whole would differ from the first change
// to its end (restic issue #5545).
type framedWriter struct {
	pw    *io.PipeWriter
	done  chan error
	close sync.Once
	err   error
}

// frameEncoder compresses frames; EncodeAll is safe for concurrent use and
// its output depends only on its input.
var frameEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))

func newFramedWriter(out io.Writer) *framedWriter {
	pr, pw := io.Pipe()
	fw := &framedWriter{pw: pw, done: make(chan error, 1)}
	go func() {
		var frame []byte
		err := chunk.Split(pr, chunk.Content, func(_ chunk.Ref, data []byte) error {
			frame = frameEncoder.EncodeAll(data, frame[:0])
			_, err := out.Write(frame)
			return err
		})
		// A failed write stops the tar writer's next Write too.
		pr.CloseWithError(err)
		fw.done <- err
	}()
	return fw
}

func (fw *framedWriter) Write(p []byte) (int, error) { return fw.pw.Write(p) }

// Close ends the stream and waits until its last frame is written. It may
// be called again (Dump closes on success and defers a close for errors)
// and returns the same result.
func (fw *framedWriter) Close() error {
	fw.close.Do(func() {
		fw.pw.Close()
		fw.err = <-fw.done
	})
	return fw.err
}
