package storage

import (
	"context"
	"path/filepath"
	"sync"
)

// lockName is the hidden file in a directory whose flock(2) guards the
// conditional writes of the objects in it (see fileStorage.PutIf). It is
// created by the first such write and left in place: removing it would let
// two writers lock two different files of the same name.
const lockName = ".weir-lock"

// dirMutexes serialise, within this process, the conditional writes of one
// directory, before flock does so between processes. flock alone would do on
// a local file system (its locks belong to open files, not to processes),
// but on NFS Linux emulates it with fcntl locks, which do not exclude other
// threads of the process that holds them.
var dirMutexes sync.Map // lock file path → chan struct{} (capacity 1)

// lockDir takes the exclusive lock of directory dir (which exists) for
// this process and, where the platform has flock, for every process on this
// machine, waiting until ctx is done. The returned func releases it.
func lockDir(ctx context.Context, dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockName)
	v, _ := dirMutexes.LoadOrStore(path, make(chan struct{}, 1))
	mu := v.(chan struct{})
	select {
	case mu <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release, err := flockFile(ctx, path)
	if err != nil {
		<-mu
		return nil, err
	}
	return func() { release(); <-mu }, nil
}
