package savepoint

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// Writer writes one new savepoint: the pipeline, data files, and last the
// metadata that commits it. Its methods may be called from several
// goroutines; each RecordWriter belongs to one.
type Writer struct {
	st       storage.Storage
	job, id  string
	dir      string
	mu       sync.Mutex
	owners   map[ownerKey]*ownerFiles
	numbers  [SectionSources + 1]int // owners per section so far
	written  map[string]writtenFile
	open     int
	pipeline *File
	done     bool // committed
	aborted  bool
}

type ownerKey struct {
	sec  Section
	name string
}

// ownerFiles are the data files of one owner (a transform, GroupByKey, ...).
type ownerFiles struct {
	number  int
	ranges  []KeyGroupRange
	unkeyed int
}

type writtenFile struct {
	owner ownerKey
	file  File
}

// Create starts savepoint id of job in st, in the directory DirName(job,
// id). It refuses (ErrExists) if anything exists in that directory: a
// savepoint is never overwritten, nor written into, and the files of a
// failed attempt stay until someone deletes them; use another ID.
func Create(ctx context.Context, st storage.Storage, job, id string) (*Writer, error) {
	dir, err := DirName(job, id)
	if err != nil {
		return nil, err
	}
	names, err := st.List(ctx, dir+"/")
	if err != nil {
		return nil, fmt.Errorf("savepoint: create %s/%s: %w", st, dir, err)
	}
	if len(names) > 0 {
		what := "has files (an unfinished savepoint?)"
		if slices.Contains(names, join(dir, MetadataBase)) {
			what = "is a committed savepoint"
		}
		return nil, fmt.Errorf("savepoint: create %s/%s: %w: the directory %s; choose another savepoint ID", st, dir, ErrExists, what)
	}
	return &Writer{st: st, job: job, id: id, dir: dir, owners: map[ownerKey]*ownerFiles{}, written: map[string]writtenFile{}}, nil
}

// Abort gives up a savepoint that has not been committed: it deletes the
// files this Writer wrote (the pipeline and closed data files; aborted
// ones were never stored) and nothing else, so a failed attempt leaves no
// directory behind (a crash still may: it has no _metadata, and `weir
// savepoint list` shows it as incomplete). Data files still open must be
// aborted first. After Commit it does nothing.
func (w *Writer) Abort(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.aborted {
		return nil
	}
	w.aborted = true
	var names []string
	if w.pipeline != nil {
		names = append(names, PipelineBase)
	}
	for rel := range w.written {
		names = append(names, rel)
	}
	slices.Sort(names)
	var errs []error
	for _, rel := range names {
		if err := w.st.Delete(ctx, join(w.dir, rel)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("savepoint: abort %s/%s: %w", w.st, w.dir, err)
	}
	return nil
}

// Dir returns the savepoint's directory, relative to the store's root.
func (w *Writer) Dir() string { return w.dir }

// name returns the store's URL and the object name of a file, for errors.
func (w *Writer) name(rel string) string { return fmt.Sprintf("%s/%s", w.st, join(w.dir, rel)) }

// Pipeline writes the pipeline proto (its encoded bytes, as given) and
// returns its File, which Commit puts in the metadata.
func (w *Writer) Pipeline(ctx context.Context, pipeline []byte) (File, error) {
	name := join(w.dir, PipelineBase)
	if err := w.st.PutIfAbsent(ctx, name, pipeline); err != nil {
		if errors.Is(err, storage.ErrExists) {
			err = fmt.Errorf("%w: %w", ErrExists, err)
		}
		return File{}, fmt.Errorf("savepoint: writing the pipeline %s: %w", w.name(PipelineBase), err)
	}
	sum := sha256.Sum256(pipeline)
	f := File{Path: PipelineBase, Size: int64(len(pipeline)), SHA256: hex.EncodeToString(sum[:])}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pipeline = &f
	return f, nil
}

// File starts a data file of the owner named owner (a transform's, a
// GroupByKey's, ... unique name) in section sec. In the keyed sections
// (SectionTransforms, SectionGroups) kgs is the file's non-empty key-group
// range, disjoint from the owner's other files; in the others it must be
// nil. Close the RecordWriter to finish the file, and list what Close
// returns in the owner's Files in the metadata given to Commit; or Abort
// it. Until then it holds a goroutine that streams the file to the store
// (with ctx).
func (w *Writer) File(ctx context.Context, sec Section, owner string, kgs *KeyGroupRange) (*RecordWriter, error) {
	fail := func(format string, args ...any) (*RecordWriter, error) {
		return nil, fmt.Errorf("savepoint: new data file of %s %q in %s/%s: %s", sec, owner, w.st, w.dir, fmt.Sprintf(format, args...))
	}
	switch {
	case !sec.valid():
		return fail("invalid section")
	case owner == "":
		return fail("no owner name")
	case sec.keyed() && kgs == nil:
		return fail("no key-group range in a keyed section")
	case !sec.keyed() && kgs != nil:
		return fail("a key-group range in a section that is not keyed")
	case kgs != nil && (kgs.Start < 0 || kgs.Start >= kgs.End || kgs.End > MaxKeyGroups):
		return fail("key groups [%d, %d) empty or outside [0, %d)", kgs.Start, kgs.End, MaxKeyGroups)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fail("the savepoint is committed")
	}
	key := ownerKey{sec, owner}
	o := w.owners[key]
	if o == nil {
		w.numbers[sec]++
		o = &ownerFiles{number: w.numbers[sec]}
		w.owners[key] = o
	}
	var rel string
	if kgs != nil {
		for _, r := range o.ranges {
			if kgs.Start < r.End && r.Start < kgs.End {
				return fail("key groups [%d, %d) overlap the owner's file of [%d, %d)", kgs.Start, kgs.End, r.Start, r.End)
			}
		}
		o.ranges = append(o.ranges, *kgs)
		rel = fileName(sec, o.number, kgs, 0)
	} else {
		rel = fileName(sec, o.number, nil, o.unkeyed)
		o.unkeyed++
	}
	w.open++
	rw := &RecordWriter{w: w, owner: key, path: rel, lastKG: -1}
	if kgs != nil {
		r := *kgs
		rw.kgs = &r
	}
	pr, pw := io.Pipe()
	rw.pw, rw.put = pw, make(chan error, 1)
	rw.bw = bufio.NewWriterSize(pw, 256<<10)
	rw.f = newFramer(rw.bw)
	go func() {
		err := w.st.Put(ctx, join(w.dir, rel), pr)
		closeErr := err
		if closeErr == nil {
			closeErr = errors.New("the store stopped reading the file")
		}
		pr.CloseWithError(closeErr) // unblocks a writer if Put gave up early
		rw.put <- err
	}()
	if err := rw.f.header(); err != nil {
		rw.Abort()
		return fail("%v", err)
	}
	return rw, nil
}

// RecordWriter writes the records of one data file, in key-group order in
// keyed sections. It is not safe for concurrent use.
type RecordWriter struct {
	w      *Writer
	owner  ownerKey
	path   string
	kgs    *KeyGroupRange
	pw     *io.PipeWriter
	bw     *bufio.Writer
	f      *framer
	put    chan error
	lastKG int
	err    error
	closed bool
}

// Path returns the file's path relative to the savepoint directory.
func (rw *RecordWriter) Path() string { return rw.path }

// Write appends r. Keyed records (StateRecord, TimerRecord,
// GroupValueRecord, TriggerRecord) must be in the file's key-group range
// and come in ascending key-group order; each section takes only its kinds
// of record (see Section). After an error the file cannot be finished.
func (rw *RecordWriter) Write(r Record) error {
	if rw.err != nil {
		return rw.err
	}
	if rw.closed {
		return fmt.Errorf("savepoint: data file %s: write after Close", rw.w.name(rw.path))
	}
	if err := rw.vet(r); err != nil {
		return fmt.Errorf("savepoint: data file %s: record %d: %w", rw.w.name(rw.path), rw.f.count, err)
	}
	if err := rw.f.record(r); err != nil {
		rw.err = fmt.Errorf("savepoint: writing data file %s: %w", rw.w.name(rw.path), err)
		return rw.err
	}
	if kg := r.keyGroup(); kg >= 0 {
		rw.lastKG = kg
	}
	return nil
}

// vet refuses a record that does not belong in the file (the file stays
// usable).
func (rw *RecordWriter) vet(r Record) error {
	if err := checkRecord(r); err != nil {
		return err
	}
	if !rw.owner.sec.allows(r.kind()) {
		return fmt.Errorf("a %T does not belong in section %s", r, rw.owner.sec)
	}
	if kg := r.keyGroup(); kg >= 0 {
		if !rw.kgs.Contains(kg) {
			return fmt.Errorf("key group %d outside the file's [%d, %d)", kg, rw.kgs.Start, rw.kgs.End)
		}
		if kg < rw.lastKG {
			return fmt.Errorf("key group %d after key group %d: records must come in key-group order", kg, rw.lastKG)
		}
	}
	return nil
}

// Close finishes the file (footer, upload) and returns its File for the
// metadata. After an error nothing more can be done with the file; its
// owner's key-group range stays taken.
func (rw *RecordWriter) Close() (File, error) {
	if rw.closed {
		return File{}, fmt.Errorf("savepoint: data file %s: closed twice", rw.w.name(rw.path))
	}
	if rw.err != nil {
		rw.Abort()
		return File{}, rw.err
	}
	err := rw.f.footer()
	if err == nil {
		err = rw.bw.Flush()
	}
	if err != nil {
		rw.Abort()
		return File{}, fmt.Errorf("savepoint: writing data file %s: %w", rw.w.name(rw.path), err)
	}
	rw.pw.Close()
	if err := <-rw.put; err != nil {
		rw.finish(nil)
		return File{}, fmt.Errorf("savepoint: writing data file %s: %w", rw.w.name(rw.path), err)
	}
	f := File{Path: rw.path, Size: rw.f.size, SHA256: hex.EncodeToString(rw.f.h.Sum(nil)), KeyGroups: rw.kgs, Records: rw.f.count}
	rw.finish(&f)
	return f, nil
}

// Abort abandons the file: nothing is stored under its name (the store's
// Put fails). It does nothing after Close.
func (rw *RecordWriter) Abort() {
	if rw.closed {
		return
	}
	rw.pw.CloseWithError(errors.New("savepoint: data file abandoned"))
	<-rw.put
	rw.finish(nil)
}

// finish records the end of the file with the writer.
func (rw *RecordWriter) finish(f *File) {
	rw.closed = true
	if rw.err == nil {
		rw.err = fmt.Errorf("savepoint: data file %s: closed", rw.w.name(rw.path))
	}
	w := rw.w
	w.mu.Lock()
	defer w.mu.Unlock()
	w.open--
	if f != nil {
		w.written[f.Path] = writtenFile{owner: rw.owner, file: *f}
	}
}

// Commit completes the savepoint: it writes m as the _metadata file, last
// and create-only. Job, ID and Pipeline may be left empty; they are filled
// in. Every data file m lists must be one this Writer wrote, with the
// figures Close returned, under its owner, and every file written must be
// listed; every RecordWriter must be closed. A savepoint is committed once
// (ErrExists).
func (w *Writer) Commit(ctx context.Context, m *Metadata) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	name := join(w.dir, MetadataBase)
	fail := func(err error) error {
		return fmt.Errorf("savepoint: commit %s/%s: %w", w.st, name, err)
	}
	if w.done {
		return fail(fmt.Errorf("%w: committed already", ErrExists))
	}
	if w.aborted {
		return fail(errors.New("aborted"))
	}
	c := *m
	if err := w.complete(&c); err != nil {
		return fail(err)
	}
	data, err := EncodeMetadata(&c)
	if err != nil {
		return fail(err)
	}
	if err := w.st.PutIfAbsent(ctx, name, data); err != nil {
		if errors.Is(err, storage.ErrExists) {
			err = fmt.Errorf("%w: %w", ErrExists, err)
		}
		return fail(err)
	}
	w.done = true
	return nil
}

// complete fills in m's job, ID and pipeline and checks its files against
// those written.
func (w *Writer) complete(m *Metadata) error {
	switch {
	case w.open > 0:
		return fmt.Errorf("%d data files are not closed", w.open)
	case w.pipeline == nil:
		return errors.New("no pipeline written")
	case m.Job == "":
		m.Job = w.job
	case m.Job != w.job:
		return fmt.Errorf("metadata of job %q, the savepoint is job %q's", m.Job, w.job)
	}
	if m.ID == "" {
		m.ID = w.id
	} else if m.ID != w.id {
		return fmt.Errorf("metadata of savepoint %q, this is savepoint %q", m.ID, w.id)
	}
	if m.Pipeline == (File{}) {
		m.Pipeline = *w.pipeline
	} else if !sameFile(m.Pipeline, *w.pipeline) {
		return fmt.Errorf("pipeline %+v, but %+v was written", m.Pipeline, *w.pipeline)
	}
	listed := 0
	for key, f := range m.dataFiles() {
		got, ok := w.written[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("%s %q: file %q was not written by this writer", key.sec, key.name, f.Path)
		case got.owner != key:
			return fmt.Errorf("%s %q: file %q was written for %s %q", key.sec, key.name, f.Path, got.owner.sec, got.owner.name)
		case !sameFile(f, got.file):
			return fmt.Errorf("%s %q: file %+v, but %+v was written", key.sec, key.name, f, got.file)
		}
		listed++
	}
	for key, f := range m.nativeFiles {
		got, ok := w.written[f.Path]
		if !ok || got.owner != key || !sameFile(f, got.file) {
			return fmt.Errorf("native DB of stage %q: file %+v was not written so by this writer", key.name, f)
		}
		listed++
	}
	if listed != len(w.written) {
		for p, got := range w.written {
			if got.owner.sec == sectionNative {
				continue
			}
			if !m.lists(got.owner, p) {
				return fmt.Errorf("file %q of %s %q was written but is not listed", p, got.owner.sec, got.owner.name)
			}
		}
		return fmt.Errorf("%d files were written, %d are listed (a native file is missing)", len(w.written), listed)
	}
	return nil
}

func sameFile(a, b File) bool {
	if (a.KeyGroups == nil) != (b.KeyGroups == nil) || a.KeyGroups != nil && *a.KeyGroups != *b.KeyGroups {
		return false
	}
	a.KeyGroups, b.KeyGroups = nil, nil
	return a == b
}
