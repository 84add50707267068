//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package storage

import (
	"context"
	"fmt"
	"runtime"
)

// flockFile cannot lock files between processes here: conditional writes
// to file:// are refused rather than done without the lock.
func flockFile(ctx context.Context, path string) (release func(), err error) {
	return nil, fmt.Errorf("lock %s: conditional writes to file:// need flock(2), which weir does not use on %s", path, runtime.GOOS)
}
