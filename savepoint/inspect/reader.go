// Package inspect reads savepoints from a program, decoded: the read half
// of Flink's State Processor API. Open a savepoint (Open, OpenURL), verify
// it, and iterate its records (Reader.Entries) filtered by transform and
// state, with keys, windows and values decoded with the coders its
// metadata names, looked up in the pipeline proto it holds (see Decoder).
// It also lists the savepoints of a directory (List) and deletes one at
// the user's request (Dispose). `weir savepoint` is a thin shell over it.
//
// The savepoint package owns the format and stays free of Beam; this
// package adds what needs Beam's model: the pipeline proto and its coders.
package inspect

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"path"
	"path/filepath"
	"slices"
	"strings"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
)

// Reader reads one committed savepoint, decoding its records.
type Reader struct {
	sp       *savepoint.Savepoint
	dec      *Decoder
	pipeline *pipepb.Pipeline
	url      string
	st       storage.Storage // closed by Close if owned
	owned    bool
}

// Open opens the savepoint in directory dir of st ("" if st's root is the
// savepoint directory), reads its pipeline proto (checking its checksum)
// and prepares the decoding of its coders. It does not read data files:
// see Verify.
func Open(ctx context.Context, st storage.Storage, dir string) (*Reader, error) {
	sp, err := savepoint.Open(ctx, st, dir)
	if err != nil {
		return nil, err
	}
	data, err := sp.Pipeline(ctx)
	if err != nil {
		return nil, err
	}
	r := &Reader{sp: sp, pipeline: &pipepb.Pipeline{}, url: DirURL(st, dir), st: st}
	if err := proto.Unmarshal(data, r.pipeline); err != nil {
		return nil, fmt.Errorf("inspect: the pipeline %s/%s: %w: not a Beam pipeline proto: %w", r.url, savepoint.PipelineBase, savepoint.ErrCorrupt, err)
	}
	r.dec = NewDecoder(r.pipeline.GetComponents().GetCoders())
	return r, nil
}

// OpenURL opens the savepoint whose directory is at rawURL: file:///abs/dir,
// gs://bucket/prefix/dir, or a plain absolute path. Close the Reader to
// release the store.
func OpenURL(ctx context.Context, rawURL string) (*Reader, error) {
	st, dir, err := OpenDir(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, st, dir)
	if err != nil {
		st.Close()
		return nil, err
	}
	r.owned = true
	return r, nil
}

// OpenDir opens the store of the parent of the directory at rawURL (see
// OpenURL) and returns it with the directory's name in it, "" if the
// directory is the store's root (a bucket). The caller closes the store.
func OpenDir(ctx context.Context, rawURL string) (storage.Storage, string, error) {
	u, err := StoreURL(rawURL)
	if err != nil {
		return nil, "", err
	}
	p, err := url.Parse(u)
	if err != nil {
		return nil, "", fmt.Errorf("inspect: %q: %w", rawURL, err)
	}
	dir := ""
	if clean := strings.TrimRight(p.Path, "/"); clean != "" {
		parent, base := path.Split(clean)
		if storage.CheckName(base) == nil {
			p.Path, dir = cmp.Or(parent, "/"), base
		}
	}
	st, err := storage.Open(ctx, p.String())
	if err != nil {
		return nil, "", err
	}
	return st, dir, nil
}

// OpenStore opens the store at rawURL (see StoreURL); the caller closes it.
func OpenStore(ctx context.Context, rawURL string) (storage.Storage, error) {
	u, err := StoreURL(rawURL)
	if err != nil {
		return nil, err
	}
	return storage.Open(ctx, u)
}

// StoreURL returns rawURL as a storage URL: a plain absolute path becomes
// a file:// URL; URLs are returned as they are.
func StoreURL(rawURL string) (string, error) {
	if strings.Contains(rawURL, "://") {
		return rawURL, nil
	}
	if !filepath.IsAbs(rawURL) {
		return "", fmt.Errorf("inspect: %q is neither a URL (file:///abs/dir, gs://bucket/prefix) nor an absolute path", rawURL)
	}
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Clean(rawURL))}).String(), nil
}

// DirURL returns the URL of directory dir of st, for messages.
func DirURL(st storage.Storage, dir string) string {
	if dir == "" {
		return st.String()
	}
	return strings.TrimRight(st.String(), "/") + "/" + dir
}

// Close releases the store if OpenURL opened it.
func (r *Reader) Close() error {
	if !r.owned {
		return nil
	}
	r.owned = false
	return r.st.Close()
}

// URL returns the savepoint directory's URL.
func (r *Reader) URL() string { return r.url }

// Savepoint returns the savepoint being read.
func (r *Reader) Savepoint() *savepoint.Savepoint { return r.sp }

// Metadata returns the savepoint's metadata (shared: do not modify it).
func (r *Reader) Metadata() *savepoint.Metadata { return r.sp.Metadata() }

// Pipeline returns the savepoint's pipeline proto (shared: do not modify
// it).
func (r *Reader) Pipeline() *pipepb.Pipeline { return r.pipeline }

// Decoder returns the decoder of the pipeline's coders.
func (r *Reader) Decoder() *Decoder { return r.dec }

// Verify reads every file of the savepoint, checking sizes, checksums,
// framing and counts; its error names the file at fault.
func (r *Reader) Verify(ctx context.Context) error { return r.sp.Verify(ctx) }

// Filter selects records. Empty fields select everything.
type Filter struct {
	// Transform is the unique name of a stateful transform, GroupByKey,
	// side input reader or source.
	Transform string
	// State is a state ID, timer family ID or side input ID; records that
	// have none of them (GroupByKey buffers and trigger state, parked
	// input, source residuals) are not selected when it is set.
	State string
}

func (f Filter) owner(name string) bool { return f.Transform == "" || f.Transform == name }

func (f Filter) id(id string) bool { return f.State == "" || f.State == id }

// Entries yields the records of the savepoint that f selects, decoded, in
// the order of the metadata (sections, owners by name, files by path) and
// of the files. It stops at the first error, which names the file; a file
// is known intact only once read to its end (Verify first to act on
// nothing but intact data). A native savepoint has records of its sources
// only: Entries yields an error first if f selects more.
func (r *Reader) Entries(ctx context.Context, f Filter) iter.Seq2[Entry, error] {
	type owner struct {
		name  string
		files []savepoint.File
		entry func(savepoint.Record) (Entry, bool)
	}
	m := r.Metadata()
	var owners []owner
	for _, t := range m.Transforms {
		owners = append(owners, owner{t.UniqueName, t.Files, func(rec savepoint.Record) (Entry, bool) { return r.transformEntry(t, rec, f) }})
	}
	for _, g := range m.Groups {
		owners = append(owners, owner{g.UniqueName, g.Files, func(rec savepoint.Record) (Entry, bool) { return r.groupEntry(g, rec, f) }})
	}
	for _, s := range m.SideInputs {
		owners = append(owners, owner{s.UniqueName, s.Files, func(rec savepoint.Record) (Entry, bool) { return r.sideEntry(s, rec, f) }})
	}
	for _, s := range m.Sources {
		owners = append(owners, owner{s.UniqueName, s.Files, func(rec savepoint.Record) (Entry, bool) { return r.sourceEntry(s, rec, f) }})
	}
	return func(yield func(Entry, error) bool) {
		if m.IsNative() && (f.Transform == "" || !slices.ContainsFunc(m.Sources, func(s savepoint.Source) bool { return s.UniqueName == f.Transform })) {
			yield(nil, fmt.Errorf("savepoint %s is native: its state is Pebble files, which only a restore reads (its sources' positions are records: --transform=SOURCE shows them); take a canonical savepoint (weir savepoint take --type=canonical) to inspect state", r.url))
			return
		}
		for _, o := range owners {
			if f.owner(o.name) && !r.file(ctx, o.files, o.entry, yield) {
				return
			}
		}
	}
}

// file yields the entries of the records of files that conv selects; it
// returns false when the iteration is to stop.
func (r *Reader) file(ctx context.Context, files []savepoint.File, conv func(savepoint.Record) (Entry, bool), yield func(Entry, error) bool) bool {
	for _, file := range files {
		rr, err := r.sp.Records(ctx, file.Path)
		if err != nil {
			yield(nil, err)
			return false
		}
		for rr.Next() {
			if e, ok := conv(rr.Record()); ok && !yield(e, nil) {
				rr.Close()
				return false
			}
		}
		err = errors.Join(rr.Err(), rr.Close())
		if err != nil {
			yield(nil, err)
			return false
		}
	}
	return true
}
