package worker

import (
	"bytes"
	"io"
	"os"
	"sync"
	"time"
)

// logBuffer collects an attempt's log: in memory up to memLimit, then in a
// temporary file, cut at max bytes with a marker. It is safe for concurrent
// writers (an exec handler writes stdout and stderr at once).
type logBuffer struct {
	mu        sync.Mutex
	max       int64
	n         int64
	truncated bool
	mem       bytes.Buffer
	file      *os.File
}

const logMemLimit = 256 << 10

var truncMarker = []byte("\n[log truncated: the attempt wrote more than the limit]\n")

func newLogBuffer(max int64) *logBuffer { return &logBuffer{max: max} }

// Write appends p, up to the limit; it never fails the writer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return len(p), nil
	}
	q := p
	if room := b.max - b.n; int64(len(q)) > room {
		q = q[:room]
		b.truncated = true
	}
	b.append(q)
	if b.truncated {
		b.append(truncMarker)
	}
	return len(p), nil
}

func (b *logBuffer) append(p []byte) {
	b.n += int64(len(p))
	if b.file == nil && b.mem.Len()+len(p) <= logMemLimit {
		b.mem.Write(p)
		return
	}
	if b.file == nil {
		f, err := os.CreateTemp("", "jobfleet-log-*")
		if err != nil {
			// No disk: keep what fits in memory.
			b.n -= int64(len(p))
			b.truncated = true
			return
		}
		_ = os.Remove(f.Name()) // unlinked: gone when closed, even after a crash
		if _, err := f.Write(b.mem.Bytes()); err != nil {
			f.Close()
			b.truncated = true
			return
		}
		b.mem.Reset()
		b.file = f
	}
	if _, err := b.file.Write(p); err != nil {
		b.truncated = true
	}
}

// Len returns the bytes collected.
func (b *logBuffer) Len() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Reader returns the collected log and its size. Writes after this call are
// not included.
func (b *logBuffer) Reader() (io.Reader, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file == nil {
		return bytes.NewReader(bytes.Clone(b.mem.Bytes())), int64(b.mem.Len())
	}
	return io.NewSectionReader(b.file, 0, b.n), b.n
}

// Close releases the temporary file.
func (b *logBuffer) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.file != nil {
		b.file.Close()
		b.file = nil
	}
}

// limiter lets one event through per interval (for logging errors in hot
// loops).
type limiter struct {
	mu    sync.Mutex
	every time.Duration
	last  time.Time
}

func newLimiter(every time.Duration) *limiter { return &limiter{every: every} }

func (l *limiter) allow() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) < l.every {
		return false
	}
	l.last = now
	return true
}
