package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	defaultChunkSize = 8 << 20
	// gcsChunkUnit is the granularity of resumable upload chunks.
	gcsChunkUnit = 256 << 10
)

// GCS keeps objects in a Google Cloud Storage bucket, under an optional
// prefix. Create-only writes use the DoesNotExist precondition (HTTP 412 if
// the object exists), which GCS evaluates atomically.
type GCS struct {
	client     *gcs.Client
	bucket     *gcs.BucketHandle
	bucketName string
	prefix     string // "" or ends with '/'
	chunkSize  int
	ownsClient bool
}

// NewGCS returns a Storage for gs://bucket/prefix using client, which the
// caller keeps ownership of. prefix may be empty.
func NewGCS(client *gcs.Client, bucket, prefix string) *GCS {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &GCS{
		client:     client,
		bucket:     client.Bucket(bucket),
		bucketName: bucket,
		prefix:     prefix,
		chunkSize:  defaultChunkSize,
	}
}

func (g *GCS) String() string { return "gs://" + g.bucketName + "/" + g.prefix }

// Close closes the client if Open created it.
func (g *GCS) Close() error {
	if !g.ownsClient {
		return nil
	}
	if err := g.client.Close(); err != nil {
		return fmt.Errorf("storage: close %s: %w", g, err)
	}
	return nil
}

// object checks name and returns its handle and URL (for messages).
func (g *GCS) object(name string) (*gcs.ObjectHandle, string, error) {
	if err := CheckName(name); err != nil {
		return nil, "", fmt.Errorf("storage: %s: %w", g, err)
	}
	full := g.prefix + name
	return g.bucket.Object(full), "gs://" + g.bucketName + "/" + full, nil
}

func (g *GCS) Put(ctx context.Context, name string, r io.Reader) error {
	obj, url, err := g.object(name)
	if err != nil {
		return err
	}
	// Overwriting with the same bytes is harmless, so retries are safe
	// although the write carries no precondition.
	obj = obj.Retryer(gcs.WithPolicy(gcs.RetryAlways))
	if err := g.write(ctx, obj, r, g.chunkSize); err != nil {
		return fmt.Errorf("storage: put %s: %w", url, err)
	}
	return nil
}

func (g *GCS) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	obj, url, err := g.object(name)
	if err != nil {
		return err
	}
	// Writes with a precondition are retried by the client. A retry of a
	// write whose response was lost gets 412 although the object is ours:
	// callers that care compare the existing bytes (checkpoint.Commit does).
	obj = obj.If(gcs.Conditions{DoesNotExist: true})
	// One chunk larger than data: a single, retryable request.
	chunk := (len(data)/gcsChunkUnit + 1) * gcsChunkUnit
	err = g.write(ctx, obj, bytes.NewReader(data), chunk)
	if isPreconditionFailed(err) {
		return fmt.Errorf("storage: put-if-absent %s: %w", url, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", url, err)
	}
	return nil
}

// write uploads r to obj. If r fails, the upload is cancelled rather than
// closed, so no partial object is created.
func (g *GCS) write(ctx context.Context, obj *gcs.ObjectHandle, r io.Reader, chunkSize int) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(wctx)
	w.ChunkSize = chunkSize
	w.ContentType = "application/octet-stream"
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		_ = w.Close() // waits for the upload goroutine; the object is not created
		return err
	}
	return w.Close()
}

func (g *GCS) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, url, err := g.object(name)
	if err != nil {
		return nil, err
	}
	r, err := obj.NewReader(ctx)
	if errors.Is(err, gcs.ErrObjectNotExist) {
		return nil, fmt.Errorf("storage: get %s: %w", url, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: get %s: %w", url, err)
	}
	return r, nil
}

func (g *GCS) Stat(ctx context.Context, name string) (int64, error) {
	obj, url, err := g.object(name)
	if err != nil {
		return 0, err
	}
	attrs, err := obj.Attrs(ctx)
	if errors.Is(err, gcs.ErrObjectNotExist) {
		return 0, fmt.Errorf("storage: stat %s: %w", url, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: stat %s: %w", url, err)
	}
	return attrs.Size, nil
}

func (g *GCS) List(ctx context.Context, prefix string) ([]string, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("storage: list %s: %w", g, err)
	}
	q := &gcs.Query{Prefix: g.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, fmt.Errorf("storage: list %s prefix %q: %w", g, prefix, err)
	}
	var names []string
	it := g.bucket.Objects(ctx, q)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("storage: list %s prefix %q: %w", g, prefix, err)
		}
		name := strings.TrimPrefix(attrs.Name, g.prefix)
		if CheckName(name) != nil {
			continue // not written through this package
		}
		names = append(names, name)
	}
	sort.Strings(names) // GCS does; fakes need not
	return names, nil
}

func (g *GCS) Delete(ctx context.Context, name string) error {
	obj, url, err := g.object(name)
	if err != nil {
		return err
	}
	// Deleting twice is harmless here (a missing object is success), so
	// retries are safe.
	err = obj.Retryer(gcs.WithPolicy(gcs.RetryAlways)).Delete(ctx)
	if err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
		return fmt.Errorf("storage: delete %s: %w", url, err)
	}
	return nil
}

func isPreconditionFailed(err error) bool {
	if err == nil {
		return false
	}
	var apiErr *googleapi.Error
	if errors.As(err, &apiErr) && apiErr.Code == http.StatusPreconditionFailed {
		return true
	}
	return status.Code(err) == codes.FailedPrecondition // gRPC clients
}
