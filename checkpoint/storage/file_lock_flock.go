//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package storage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// flockFile takes flock(LOCK_EX) of the file path, creating it if needed,
// polling without blocking so that ctx can end the wait. The kernel
// releases the lock if this process dies. If the file was removed or
// replaced while we waited (someone deleted the directory), the lock is on
// a file nobody else will lock: take the one that is there now.
func flockFile(ctx context.Context, path string) (release func(), err error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		fd := int(f.Fd())
		for {
			err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
			if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
			case <-time.After(time.Millisecond):
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: flock: %w", path, err)
		}
		held, herr := f.Stat()
		now, nerr := os.Stat(path)
		if herr == nil && nerr == nil && os.SameFile(held, now) {
			return func() {
				_ = syscall.Flock(fd, syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		f.Close() // releases the lock
		if herr != nil {
			return nil, fmt.Errorf("lock %s: %w", path, herr)
		}
	}
}
