package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// tmpPrefix starts the names of files being written. CheckName refuses
// components starting with '.', so no object can be named like one, and List
// skips them.
const tmpPrefix = ".weir-tmp-"

// fileStorage keeps each object in a file under root, named by the object
// name. Writes go to a temporary file in the target directory that is synced
// and then renamed (Put) or hard-linked (PutIfAbsent) into place, and the
// directory is synced, so an object is durable and complete or absent.
type fileStorage struct {
	root string
}

// NewFile returns a Storage that keeps objects under the absolute directory
// dir. The directory is created by the first write.
func NewFile(dir string) (Storage, error) {
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("storage: file root %q is not an absolute path", dir)
	}
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("storage: file root %s is not a directory", dir)
	}
	return &fileStorage{root: dir}, nil
}

func (s *fileStorage) String() string { return "file://" + filepath.ToSlash(s.root) }

func (s *fileStorage) Close() error { return nil }

// path checks name and returns its file path.
func (s *fileStorage) path(name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", fmt.Errorf("storage: %s: %w", s, err)
	}
	return filepath.Join(s.root, filepath.FromSlash(name)), nil
}

func (s *fileStorage) Put(ctx context.Context, name string, r io.Reader) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	tmp, err := s.writeTemp(ctx, p, r)
	if err != nil {
		return fmt.Errorf("storage: put %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("storage: put %s: %w", p, err)
	}
	if err := SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("storage: put %s: %w", p, err)
	}
	return nil
}

func (s *fileStorage) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(p); err == nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", p, ErrExists)
	}
	tmp, err := s.writeTemp(ctx, p, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", p, err)
	}
	// link(2) fails with EEXIST instead of replacing: the atomic test-and-set.
	// The content was synced before the name appears.
	err = os.Link(tmp, p)
	_ = os.Remove(tmp)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("storage: put-if-absent %s: %w", p, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", p, err)
	}
	if err := SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", p, err)
	}
	return nil
}

// writeTemp writes r to a synced temporary file next to p and returns its path.
func (s *fileStorage) writeTemp(ctx context.Context, p string, r io.Reader) (string, error) {
	dir := filepath.Dir(p)
	var f *os.File
	// A concurrent Delete may remove the directory (once empty) between
	// creating it and creating the file in it: create it again.
	for attempt := 0; ; attempt++ {
		err := s.mkdirAll(dir)
		if err == nil {
			f, err = os.CreateTemp(dir, tmpPrefix+"*")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 5 {
			return "", err
		}
	}
	tmp := f.Name()
	_, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	return tmp, nil
}

// mkdirAll creates dir and its missing parents up to the root, syncing the
// parent of each directory it creates so the new entries are durable.
func (s *fileStorage) mkdirAll(dir string) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if dir != s.root {
		if err := s.mkdirAll(filepath.Dir(dir)); err != nil {
			return err
		}
	} else if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return SyncDir(filepath.Dir(dir))
}

func (s *fileStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("storage: get %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get %s: %w", p, err)
	}
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("storage: get %s: is a directory: %w", p, ErrNotFound)
	}
	return f, nil
}

func (s *fileStorage) Stat(ctx context.Context, name string) (int64, error) {
	p, err := s.path(name)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		return 0, fmt.Errorf("storage: stat %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: stat %s: %w", p, err)
	}
	return fi.Size(), nil
}

func (s *fileStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", s, err)
	}
	// Walk the deepest directory that contains every match.
	start := s.root
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = filepath.Join(s.root, filepath.FromSlash(prefix[:i]))
	}
	var names []string
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // the start or a directory deleted meanwhile
			}
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if strings.HasPrefix(d.Name(), ".") && p != start {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil // temporary files
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list %s prefix %q: %w", s, prefix, err)
	}
	sort.Strings(names)
	return names, nil
}

func (s *fileStorage) Delete(ctx context.Context, name string) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: delete %s: %w", p, err)
	}
	s.pruneDirs(filepath.Dir(p))
	return nil
}

// pruneDirs removes dir and its parents while they are empty, up to the
// root. Failing to (not empty, or a concurrent Put) is fine.
func (s *fileStorage) pruneDirs(dir string) {
	for ; dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
}

// fileVersion is the version of a file with content data: its digest. A
// file is only ever replaced whole (rename), so the digest of what one read
// returns is the version of one state of the file.
func fileVersion(data []byte) Version {
	sum := sha256.Sum256(data)
	return Version("sha256:" + hex.EncodeToString(sum[:]))
}

func (s *fileStorage) GetVersion(ctx context.Context, name string) ([]byte, Version, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, NoVersion, err
	}
	data, err := readFile(p)
	if err != nil {
		return nil, NoVersion, fmt.Errorf("storage: get %s: %w", p, err)
	}
	return data, fileVersion(data), nil
}

// readFile reads the file p; the error wraps ErrNotFound if it does not
// exist (or is a directory).
func readFile(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		if fi, serr := os.Stat(p); serr == nil && fi.IsDir() {
			return nil, fmt.Errorf("is a directory: %w", ErrNotFound)
		}
		return nil, err
	}
	return data, nil
}

// PutIf and DeleteIf compare and swap under an exclusive lock of the
// object's directory (lockDir): a process-local mutex, for goroutines of
// this process, and flock(2) of a hidden lock file in the directory, for
// other processes on this machine (two `--resume` runs of one program). In
// the lock they read the current file, compare its digest with the
// expected version, and rename a synced temporary file into place (or
// remove the file), then sync the directory. Every conditional writer takes
// the lock, and PutIfAbsent's link(2) cannot replace a file, so a file
// passes the check and is replaced by one writer at a time: the check and
// the swap are atomic with respect to each other. The lock file, like
// temporary files, starts with '.', so no object can be named like it and
// List skips it. flock was chosen over a lock object made with link (which
// a crashed holder would leave behind) because the kernel releases it when
// its holder dies.
func (s *fileStorage) PutIf(ctx context.Context, name string, data []byte, v Version) (Version, error) {
	if v == NoVersion {
		if err := s.PutIfAbsent(ctx, name, data); err != nil {
			return NoVersion, err
		}
		return fileVersion(data), nil
	}
	p, err := s.path(name)
	if err != nil {
		return NoVersion, err
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return NoVersion, fmt.Errorf("storage: put-if %s: it does not exist: %w", p, ErrChanged)
	}
	// Written before the lock is taken, so that it is held only briefly.
	tmp, err := s.writeTemp(ctx, p, bytes.NewReader(data))
	if err != nil {
		return NoVersion, fmt.Errorf("storage: put-if %s: %w", p, err)
	}
	dir := filepath.Dir(p)
	if err := s.swap(ctx, p, tmp, v); err != nil {
		_ = os.Remove(tmp)
		s.pruneDirs(dir) // if the object went away meanwhile
		return NoVersion, fmt.Errorf("storage: put-if %s: %w", p, err)
	}
	return fileVersion(data), nil
}

// swap renames tmp to p if p is at version v, under the lock of p's
// directory.
func (s *fileStorage) swap(ctx context.Context, p, tmp string, v Version) error {
	dir := filepath.Dir(p)
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return err
	}
	defer unlock()
	err = checkVersion(p, v)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("it does not exist: %w", ErrChanged)
	}
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return SyncDir(dir)
}

func (s *fileStorage) DeleteIf(ctx context.Context, name string, v Version) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if v == NoVersion {
		return fmt.Errorf("storage: delete-if %s: no version given", p)
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: delete-if %s: %w", p, ErrNotFound)
	}
	dir := filepath.Dir(p)
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return fmt.Errorf("storage: delete-if %s: %w", p, err)
	}
	err = checkVersion(p, v)
	if err == nil {
		err = os.Remove(p)
	}
	if err == nil {
		err = SyncDir(dir)
	}
	unlock()
	if err != nil {
		return fmt.Errorf("storage: delete-if %s: %w", p, err)
	}
	s.pruneDirs(dir)
	return nil
}

// checkVersion returns nil if the file p is at version v, an error wrapping
// ErrNotFound if it does not exist, and one wrapping ErrChanged otherwise.
func checkVersion(p string, v Version) error {
	data, err := readFile(p)
	if err != nil {
		return err
	}
	if got := fileVersion(data); got != v {
		return fmt.Errorf("it is at version %s, not %s: %w", got, v, ErrChanged)
	}
	return nil
}

// SyncDir fsyncs a directory so that entries created or renamed in it are
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// ctxReader stops a copy when the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
