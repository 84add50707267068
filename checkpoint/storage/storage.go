// Package storage owns the blob stores that checkpoints are written to: a
// small interface (put, create-only put, get, list, delete, stat) and its two
// implementations, a local directory (file:///abs/dir) and Google Cloud
// Storage (gs://bucket/prefix). It knows nothing of checkpoints: names are
// opaque slash-separated paths relative to the store's root.
//
// The one operation checkpoints build on is PutIfAbsent: a create-only write
// that either creates the object with all its bytes or reports ErrExists.
// Committing a checkpoint is a PutIfAbsent of its metadata.
//
// A few small objects (a job's lease) are also rewritten in place by whoever
// owns them, with compare-and-swap: GetVersion reads an object with its
// Version, and PutIf and DeleteIf act only if the object is still at that
// version (a GCS generation-match precondition; on file:// a check under a
// lock, see fileStorage.PutIf).
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"

	gcs "cloud.google.com/go/storage"
)

var (
	// ErrNotFound is wrapped by Get and Stat when the object does not exist.
	ErrNotFound = errors.New("storage: object not found")
	// ErrExists is wrapped by PutIfAbsent (and PutIf with NoVersion) when
	// the object already exists.
	ErrExists = errors.New("storage: object already exists")
	// ErrChanged is wrapped by PutIf and DeleteIf when the object is not at
	// the version they were given: someone else rewrote or deleted it.
	ErrChanged = errors.New("storage: object is not at the expected version")
)

// Version identifies one stored state of an object for PutIf and DeleteIf:
// a GCS generation, a digest of a file's content. It is opaque and only
// meaningful to the store that returned it. A store may return the same
// version for identical bytes written again (file:// does), so a caller
// that must tell its writes apart makes their bytes differ (a lease's
// expiry changes with every renewal).
type Version string

// NoVersion stands for "no object": PutIf with it creates only.
const NoVersion Version = ""

// Storage is a flat namespace of objects, each written whole. Names are
// slash-separated relative paths (see CheckName). Implementations are safe for
// concurrent use. Every error names the object (or prefix) concerned.
type Storage interface {
	// Put writes the object from r, replacing any previous version. The
	// object appears complete or not at all: if r fails, nothing is written.
	Put(ctx context.Context, name string, r io.Reader) error
	// PutIfAbsent creates the object with data, atomically: if it already
	// exists the call fails with an error wrapping ErrExists and the existing
	// object is untouched. Of concurrent callers exactly one succeeds.
	PutIfAbsent(ctx context.Context, name string, data []byte) error
	// Get opens the object for reading; the error wraps ErrNotFound if it
	// does not exist. The caller closes the reader.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the names of all objects whose name starts with prefix
	// (a plain string prefix, not only a directory), sorted.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes the object. Deleting a missing object is not an error,
	// so that a garbage collection interrupted half-way can simply rerun.
	Delete(ctx context.Context, name string) error
	// Stat returns the object's size in bytes; the error wraps ErrNotFound
	// if it does not exist.
	Stat(ctx context.Context, name string) (size int64, err error)
	// GetVersion reads the whole object (meant for small ones) and returns
	// it with its version; the error wraps ErrNotFound if it does not exist.
	GetVersion(ctx context.Context, name string) ([]byte, Version, error)
	// PutIf writes data as the object, atomically, only if the object is
	// at version v, and returns the new version. With NoVersion it only
	// creates, and fails with ErrExists if the object exists; otherwise it
	// fails with ErrChanged if the object is at another version or does
	// not exist. Of concurrent callers with the same v at most one
	// succeeds. PutIf, DeleteIf and PutIfAbsent are atomic with respect to
	// each other; a plain Put or Delete of the same object is not ordered
	// with them, so objects written with PutIf should only be written so.
	PutIf(ctx context.Context, name string, data []byte, v Version) (Version, error)
	// DeleteIf deletes the object only if it is at version v (not
	// NoVersion): the error wraps ErrChanged if it is at another version
	// and ErrNotFound if it does not exist.
	DeleteIf(ctx context.Context, name string, v Version) error
	// Close releases what Open acquired (a GCS client it created). It does
	// not close a client passed in with WithGCSClient.
	Close() error
	// String is the store's URL, for messages.
	String() string
}

// Option configures Open.
type Option func(*options)

type options struct {
	gcsClient *gcs.Client
	chunkSize int
}

// WithGCSClient makes Open use client for gs:// URLs instead of creating one
// (tests pass a fake server's client). The caller keeps ownership of it.
func WithGCSClient(client *gcs.Client) Option {
	return func(o *options) { o.gcsClient = client }
}

// WithChunkSize sets how many bytes a GCS upload buffers per request (and can
// therefore retry); 0 keeps the default of 8 MiB. Every concurrent upload
// holds one such buffer.
func WithChunkSize(bytes int) Option {
	return func(o *options) { o.chunkSize = bytes }
}

// Open returns the Storage for url: file:///absolute/dir or
// gs://bucket[/prefix]. Nothing is created until the first write.
func Open(ctx context.Context, rawURL string, opts ...Option) (Storage, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("storage: open %q: %w", rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("storage: open %q: file URL with host %q (want file:///abs/dir)", rawURL, u.Host)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("storage: open %q: file URL with a query or fragment", rawURL)
		}
		return NewFile(u.Path)
	case "gs":
		if u.Host == "" {
			return nil, fmt.Errorf("storage: open %q: no bucket (want gs://bucket/prefix)", rawURL)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("storage: open %q: gs URL with a query or fragment", rawURL)
		}
		prefix := strings.Trim(u.Path, "/")
		if prefix != "" {
			if err := CheckName(prefix); err != nil {
				return nil, fmt.Errorf("storage: open %q: prefix: %w", rawURL, err)
			}
		}
		client, owned := o.gcsClient, false
		if client == nil {
			// JSON reads work against emulators (STORAGE_EMULATOR_HOST)
			// as well as against GCS.
			client, err = gcs.NewClient(ctx, gcs.WithJSONReads())
			if err != nil {
				return nil, fmt.Errorf("storage: open %q: create GCS client: %w", rawURL, err)
			}
			owned = true
		}
		g := NewGCS(client, u.Host, prefix)
		g.ownsClient = owned
		if o.chunkSize > 0 {
			g.chunkSize = o.chunkSize
		}
		return g, nil
	default:
		return nil, fmt.Errorf("storage: open %q: unsupported scheme %q (want file or gs)", rawURL, u.Scheme)
	}
}

// CheckName reports whether name is a valid object name: non-empty
// slash-separated components, none empty, none starting with '.', no NUL or
// backslash, at most 1024 bytes. The rule is the same for every backend, so a
// name valid on one is valid on all, and no name can escape a file:// root.
func CheckName(name string) error {
	if name == "" {
		return errors.New("empty object name")
	}
	if len(name) > 1024 {
		return fmt.Errorf("object name %.40q... longer than 1024 bytes", name)
	}
	if strings.ContainsAny(name, "\x00\\") {
		return fmt.Errorf("object name %q contains NUL or backslash", name)
	}
	for c := range strings.SplitSeq(name, "/") {
		if c == "" {
			return fmt.Errorf("object name %q has an empty path component", name)
		}
		if c[0] == '.' {
			return fmt.Errorf("object name %q has a component starting with '.'", name)
		}
	}
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return fmt.Errorf("object name %q is not a local path", name)
	}
	return nil
}

// checkPrefix accepts "" (everything) or a prefix that would be a valid name
// once completed: a trailing '/' or a partial last component is fine.
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := CheckName(strings.TrimSuffix(prefix, "/") + "x"); err != nil {
		return fmt.Errorf("bad list prefix %q: %w", prefix, err)
	}
	return nil
}
