package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
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
	if _, err := g.write(ctx, obj, r, g.chunkSize); err != nil {
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
	_, err = g.write(ctx, obj, bytes.NewReader(data), chunk)
	if isPreconditionFailed(err) {
		return fmt.Errorf("storage: put-if-absent %s: %w", url, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("storage: put-if-absent %s: %w", url, err)
	}
	return nil
}

// write uploads r to obj and returns the new object's attributes. If r
// fails, the upload is cancelled rather than closed, so no partial object
// is created.
func (g *GCS) write(ctx context.Context, obj *gcs.ObjectHandle, r io.Reader, chunkSize int) (*gcs.ObjectAttrs, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := obj.NewWriter(wctx)
	w.ChunkSize = chunkSize
	w.ContentType = "application/octet-stream"
	if _, err := io.Copy(w, r); err != nil {
		cancel()
		_ = w.Close() // waits for the upload goroutine; the object is not created
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return w.Attrs(), nil
}

// A GCS version is the object's generation, in decimal.
func gcsVersion(generation int64) Version { return Version(strconv.FormatInt(generation, 10)) }

func parseGeneration(v Version) (int64, error) {
	gen, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || gen <= 0 {
		return 0, fmt.Errorf("version %q is not a GCS generation", v)
	}
	return gen, nil
}

func (g *GCS) GetVersion(ctx context.Context, name string) ([]byte, Version, error) {
	obj, url, err := g.object(name)
	if err != nil {
		return nil, NoVersion, err
	}
	r, err := obj.NewReader(ctx)
	if errors.Is(err, gcs.ErrObjectNotExist) {
		return nil, NoVersion, fmt.Errorf("storage: get %s: %w", url, ErrNotFound)
	}
	if err != nil {
		return nil, NoVersion, fmt.Errorf("storage: get %s: %w", url, err)
	}
	defer r.Close()
	// The reader reads the generation it reports, even if the object is
	// replaced meanwhile.
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, NoVersion, fmt.Errorf("storage: get %s: %w", url, err)
	}
	if r.Attrs.Generation <= 0 {
		return nil, NoVersion, fmt.Errorf("storage: get %s: the server reported no generation", url)
	}
	return data, gcsVersion(r.Attrs.Generation), nil
}

// PutIf writes with a precondition GCS evaluates atomically: DoesNotExist
// (ifGenerationMatch=0) or GenerationMatch. Writes with a precondition are
// retried by the client; a retry of a write whose response was lost fails
// the precondition although the write happened, which callers that care
// recognise by reading the object back (a lease finds its own owner token).
func (g *GCS) PutIf(ctx context.Context, name string, data []byte, v Version) (Version, error) {
	obj, url, err := g.object(name)
	if err != nil {
		return NoVersion, err
	}
	cond := gcs.Conditions{DoesNotExist: true}
	if v != NoVersion {
		gen, err := parseGeneration(v)
		if err != nil {
			return NoVersion, fmt.Errorf("storage: put-if %s: %w", url, err)
		}
		cond = gcs.Conditions{GenerationMatch: gen}
	}
	chunk := (len(data)/gcsChunkUnit + 1) * gcsChunkUnit
	attrs, err := g.write(ctx, obj.If(cond), bytes.NewReader(data), chunk)
	switch {
	case isPreconditionFailed(err) && v == NoVersion:
		return NoVersion, fmt.Errorf("storage: put-if %s: %w", url, ErrExists)
	case isPreconditionFailed(err):
		return NoVersion, fmt.Errorf("storage: put-if %s: not at generation %s: %w", url, v, ErrChanged)
	case err != nil:
		return NoVersion, fmt.Errorf("storage: put-if %s: %w", url, err)
	case attrs == nil || attrs.Generation <= 0:
		return NoVersion, fmt.Errorf("storage: put-if %s: the server reported no generation", url)
	}
	return gcsVersion(attrs.Generation), nil
}

// DeleteIf deletes generation v of the object, on the condition that it is
// the live one. GCS enforces the ifGenerationMatch precondition; naming the
// generation as well makes the delete conditional on servers that ignore
// preconditions on deletes (fake-gcs-server does), and on a bucket that
// keeps versions it can only remove that generation, never a newer one.
func (g *GCS) DeleteIf(ctx context.Context, name string, v Version) error {
	obj, url, err := g.object(name)
	if err != nil {
		return err
	}
	gen, err := parseGeneration(v)
	if err != nil {
		return fmt.Errorf("storage: delete-if %s: %w", url, err)
	}
	err = obj.Generation(gen).If(gcs.Conditions{GenerationMatch: gen}).Delete(ctx)
	switch {
	case err == nil:
		return nil
	case isPreconditionFailed(err):
		return fmt.Errorf("storage: delete-if %s: not at generation %d: %w", url, gen, ErrChanged)
	case !errors.Is(err, gcs.ErrObjectNotExist):
		return fmt.Errorf("storage: delete-if %s: %w", url, err)
	}
	// Generation gen does not exist: the object is gone, or at another
	// generation (or a retry found our own delete done: gone).
	attrs, aerr := obj.Attrs(ctx)
	switch {
	case errors.Is(aerr, gcs.ErrObjectNotExist):
		return fmt.Errorf("storage: delete-if %s: %w", url, ErrNotFound)
	case aerr != nil:
		return fmt.Errorf("storage: delete-if %s: generation %d not found, and: %w", url, gen, aerr)
	}
	return fmt.Errorf("storage: delete-if %s: at generation %d, not %d: %w", url, attrs.Generation, gen, ErrChanged)
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
