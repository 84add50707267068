package savepoint

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// maxMetadataSize bounds the _metadata file read by Open.
const maxMetadataSize = 256 << 20

// Savepoint is a committed savepoint opened for reading. It only reads:
// nothing of a savepoint is ever written or deleted through it.
type Savepoint struct {
	st    storage.Storage
	dir   string
	meta  *Metadata
	files map[string]ownedFile
}

// ownedFile is a data file with its section and owner's declarations.
type ownedFile struct {
	owner ownerKey
	file  File
	check func(Record) error
}

// Open reads and verifies the metadata of the savepoint in directory dir of
// st ("" if st's root is the savepoint directory itself). A savepoint is
// relocatable: dir may be anywhere, under any name; but if its last
// component is a savepoint directory name (savepoint-<job>-<id>), it must
// be the metadata's job and ID (ErrForeign). Errors name the object.
func Open(ctx context.Context, st storage.Storage, dir string) (*Savepoint, error) {
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	name := join(dir, MetadataBase)
	object := fmt.Sprintf("%s/%s", st, name)
	data, err := readAll(ctx, st, name, maxMetadataSize)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("savepoint: %s: no metadata, so no committed savepoint: %w", object, err)
		}
		return nil, fmt.Errorf("savepoint: reading %s: %w", object, err)
	}
	m, err := DecodeMetadata(object, data)
	if err != nil {
		return nil, err
	}
	if dir != "" && strings.HasPrefix(path.Base(dir), dirPrefix) {
		if job, id, err := ParseDirName(dir); err == nil && (job != m.Job || id != m.ID) {
			return nil, fmt.Errorf("savepoint: metadata %s: %w: it is savepoint %q of job %q, the directory says savepoint %q of job %q", object, ErrForeign, m.ID, m.Job, id, job)
		}
	}
	s := &Savepoint{st: st, dir: dir, meta: m, files: map[string]ownedFile{}}
	for key, f := range m.dataFiles() {
		s.files[f.Path] = ownedFile{owner: key, file: f, check: m.checker(key)}
	}
	return s, nil
}

// readAll reads a whole object of at most limit bytes.
func readAll(ctx context.Context, st storage.Storage, name string, limit int64) ([]byte, error) {
	rc, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorrupt, limit)
	}
	return data, nil
}

// Dir returns the savepoint's directory in its store.
func (s *Savepoint) Dir() string { return s.dir }

// Metadata returns the savepoint's metadata (shared: do not modify it).
func (s *Savepoint) Metadata() *Metadata { return s.meta }

// name returns the store's URL and the object name of a file, for errors.
func (s *Savepoint) name(rel string) string { return fmt.Sprintf("%s/%s", s.st, join(s.dir, rel)) }

// Pipeline reads the pipeline proto and checks its size and SHA-256.
func (s *Savepoint) Pipeline(ctx context.Context) ([]byte, error) {
	want := s.meta.Pipeline
	data, err := readAll(ctx, s.st, join(s.dir, want.Path), want.Size)
	if err != nil {
		return nil, fmt.Errorf("savepoint: reading the pipeline %s: %w", s.name(want.Path), err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != want.Size || hex.EncodeToString(sum[:]) != want.SHA256 {
		return nil, fmt.Errorf("savepoint: the pipeline %s: %w: %d bytes of sha256:%x, the metadata records %d bytes of sha256:%s",
			s.name(want.Path), ErrCorrupt, len(data), sum, want.Size, want.SHA256)
	}
	return data, nil
}

// Records opens the data file at path (relative to the savepoint, as in the
// metadata) for reading. The reader checks the framing, the file's key-group
// range and order, that records belong in the file's section and name state
// IDs, timer families and side inputs its owner declares, and at the end
// the footer and the size, SHA-256 and record count in the metadata.
func (s *Savepoint) Records(ctx context.Context, path string) (*RecordReader, error) {
	of, ok := s.files[path]
	if !ok {
		return nil, fmt.Errorf("savepoint: %s: the metadata lists no data file %q", s.name(MetadataBase), path)
	}
	rc, err := s.st.Get(ctx, join(s.dir, path))
	if err != nil {
		return nil, fmt.Errorf("savepoint: opening data file %s: %w", s.name(path), err)
	}
	f := of.file
	return newRecordReader(rc, rc, s.name(path), of.owner.sec, &f, of.check), nil
}

// Each reads the data file at path in full (Records) and calls fn with
// each record; it stops at fn's first error and returns it.
func (s *Savepoint) Each(ctx context.Context, path string, fn func(Record) error) error {
	return s.each(ctx, path, false, fn)
}

// EachBorrowed is Each for readers that copy what they keep: a record,
// and its byte slices, are only valid until fn returns (the next record is
// read over them), which spares allocations per record.
func (s *Savepoint) EachBorrowed(ctx context.Context, path string, fn func(Record) error) error {
	return s.each(ctx, path, true, fn)
}

func (s *Savepoint) each(ctx context.Context, path string, borrow bool, fn func(Record) error) error {
	r, err := s.Records(ctx, path)
	if err != nil {
		return err
	}
	r.borrow = borrow
	for r.Next() {
		if err := fn(r.Record()); err != nil {
			r.Close()
			return err
		}
	}
	err = r.Err()
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// Verify reads the pipeline and every data file in full, checking them.
func (s *Savepoint) Verify(ctx context.Context) error {
	if _, err := s.Pipeline(ctx); err != nil {
		return err
	}
	for _, f := range slices.Sorted(maps.Keys(s.files)) {
		if err := s.Each(ctx, f, func(Record) error { return nil }); err != nil {
			return err
		}
	}
	return s.verifyNative(ctx)
}

// checker returns the check of the records of an owner's files against its
// declarations.
func (m *Metadata) checker(key ownerKey) func(Record) error {
	switch key.sec {
	case SectionTransforms:
		i := slices.IndexFunc(m.Transforms, func(t Transform) bool { return t.UniqueName == key.name })
		t := m.Transforms[i]
		return func(r Record) error {
			switch r := r.(type) {
			case *StateRecord:
				if !slices.ContainsFunc(t.States, func(s StateSpec) bool { return s.ID == r.StateID }) {
					return fmt.Errorf("state %q is not declared", r.StateID)
				}
			case *TimerRecord:
				j := slices.IndexFunc(t.Timers, func(f TimerFamily) bool { return f.ID == r.Family })
				if j < 0 {
					return fmt.Errorf("timer family %q is not declared", r.Family)
				}
				if d := t.Timers[j].Domain; d != r.Domain {
					return fmt.Errorf("timer of family %q in time domain %q, the family's is %q", r.Family, r.Domain, d)
				}
			}
			return nil
		}
	case SectionSideInputs:
		i := slices.IndexFunc(m.SideInputs, func(s SideInputs) bool { return s.UniqueName == key.name })
		s := m.SideInputs[i]
		return func(r Record) error {
			switch r := r.(type) {
			case *SideInputRecord:
				j := slices.IndexFunc(s.Inputs, func(in SideInputSpec) bool { return in.ID == r.SideInput })
				if j < 0 {
					return fmt.Errorf("side input %q is not declared", r.SideInput)
				}
				if s.Inputs[j].Kind == SideIterable && r.Key != nil {
					return fmt.Errorf("a key for iterable side input %q", r.SideInput)
				}
			case *ParkedRecord:
				if s.InputCoder == "" {
					return errors.New("parked input, but no input coder is declared")
				}
			}
			return nil
		}
	}
	return nil
}

// List returns the directories of the committed savepoints of job in st
// (those with a _metadata), sorted by name. It does not read them.
func List(ctx context.Context, st storage.Storage, job string) ([]string, error) {
	if err := CheckJob(job); err != nil {
		return nil, err
	}
	names, err := st.List(ctx, dirPrefix+job+"-")
	if err != nil {
		return nil, fmt.Errorf("savepoint: listing the savepoints of job %s in %s: %w", job, st, err)
	}
	var dirs []string
	for _, n := range names {
		dir, ok := strings.CutSuffix(n, "/"+MetadataBase)
		if !ok || strings.Contains(dir, "/") {
			continue
		}
		if j, _, err := ParseDirName(dir); err == nil && j == job {
			dirs = append(dirs, dir)
		}
	}
	return dirs, nil
}

// FindLatest opens the committed savepoint of job in st that was created
// last (ErrNoSavepoint if there is none). A savepoint that does not open is
// an error, not skipped: restoring an older one instead would go back in
// time unannounced.
func FindLatest(ctx context.Context, st storage.Storage, job string) (*Savepoint, error) {
	dirs, err := List(ctx, st, job)
	if err != nil {
		return nil, err
	}
	var latest *Savepoint
	for _, dir := range dirs {
		s, err := Open(ctx, st, dir)
		if err != nil {
			return nil, err
		}
		if latest == nil || cmp.Or(s.meta.Created.Compare(latest.meta.Created), strings.Compare(dir, latest.dir)) > 0 {
			latest = s
		}
	}
	if latest == nil {
		return nil, fmt.Errorf("savepoint: job %s in %s: %w", job, st, ErrNoSavepoint)
	}
	return latest, nil
}
