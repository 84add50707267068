// Package testlog owns the helpers tests use to collect and show the log
// of a server or child process they run: a buffer safe for concurrent
// writers, and the tail of what it holds.
package testlog

import (
	"bytes"
	"strings"
	"sync"
)

// Buffer collects log output from several goroutines (a server's log, a
// child's stdout and stderr).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
