package contract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
)

// maxPooledBuffer keeps an occasional large payload from pinning memory in the pool.
const maxPooledBuffer = 1 << 20

var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// GetBuffer takes an empty buffer from the pool.
func GetBuffer() *bytes.Buffer { return buffers.Get().(*bytes.Buffer) }

// PutBuffer returns a buffer to the pool; b must not be used afterwards.
func PutBuffer(b *bytes.Buffer) {
	if b == nil || b.Cap() > maxPooledBuffer {
		return
	}
	b.Reset()
	buffers.Put(b)
}

// ErrTooLarge is returned when a body passes the size limit.
var ErrTooLarge = errors.New("body too large")

// ReadBody reads r into buf, failing with ErrTooLarge past limit bytes.
// contentLength is the announced length, -1 when unknown.
func ReadBody(buf *bytes.Buffer, r io.Reader, contentLength, limit int64) error {
	if contentLength > limit {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, contentLength, limit)
	}
	if contentLength > 0 {
		buf.Grow(int(contentLength) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return nil
}
