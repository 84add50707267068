package savepoint

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// Native savepoints. A canonical savepoint (the default) holds state as
// records, independent of Pebble and of transform IDs: it restores into a
// changed pipeline, and `weir savepoint inspect` reads it, but a restore
// writes every key again. A native savepoint (Flink's --type native)
// holds each stateful subtask's Pebble checkpoint instead, copied into the
// savepoint directory: it is written and restored about as fast as a
// checkpoint, at any parallelism whose subtasks each take their key groups
// from one subtask of the savepoint (the same, or a multiple of it), but
// only into a pipeline whose stateful stages and transform IDs are those
// it was taken from. Its sources, fired Impulses and declarations are as
// in a canonical savepoint; its metadata is format version 2, so that a
// weir that predates native savepoints refuses it instead of restoring
// nothing.

// Format is how a savepoint holds its state.
type Format string

// The formats of savepoints.
const (
	Canonical Format = "canonical"
	Native    Format = "native"
)

// ParseFormat reads a format's name ("" is Canonical).
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", Canonical:
		return Canonical, nil
	case Native:
		return Native, nil
	}
	return "", fmt.Errorf("unknown savepoint format %q: want %q or %q", s, Canonical, Native)
}

// nativeVersion is the metadata format version of native savepoints.
const nativeVersion = 2

// sectionNative keys the native files of a stage among a Writer's owners
// (no data file is in it: it is not a valid Section).
const sectionNative Section = 0

// NativeDB is one stateful subtask's Pebble checkpoint in a native
// savepoint.
type NativeDB struct {
	// Stage is the engine's name of the subtask's stage (its first
	// transform's unique name).
	Stage   string        `json:"stage"`
	Subtask int           `json:"subtask"`
	Keys    KeyGroupRange `json:"key_groups"`
	// Transforms maps the unique name of each stateful transform of the
	// stage to the transform ID its keys carry in the DB.
	Transforms map[string]string `json:"transforms,omitempty"`
	// SideInputs are the stage's side inputs in the order the DB numbers
	// them: the reading transform's unique name, "/", the local name.
	SideInputs []string `json:"side_inputs,omitempty"`
	// Files are the Pebble checkpoint's files.
	Files []NativeFile `json:"files"`
}

// NativeFile is one file of a Pebble checkpoint in a native savepoint:
// Path in the savepoint, Local its name in the DB's directory.
type NativeFile struct {
	File
	Local string `json:"local"`
}

// IsNative reports whether the savepoint holds its state natively.
func (m *Metadata) IsNative() bool { return m.Type == Native }

// validateNative checks a native savepoint's DBs (none in a canonical
// one): names, key groups disjoint per stage and inside [0, maxP), files
// listed once with their figures, and no keyed data files beside them.
func (m *Metadata) validateNative(v *validator) error {
	if !m.IsNative() {
		if m.Type != "" && m.Type != Canonical {
			return fmt.Errorf("unknown savepoint type %q", m.Type)
		}
		if len(m.Native) > 0 {
			return fmt.Errorf("%d native DBs in a %s savepoint", len(m.Native), Canonical)
		}
		return nil
	}
	for _, t := range m.Transforms {
		if len(t.Files) > 0 {
			return fmt.Errorf("transform %q: data files in a native savepoint", t.UniqueName)
		}
	}
	for _, g := range m.Groups {
		if len(g.Files) > 0 {
			return fmt.Errorf("GroupByKey %q: data files in a native savepoint", g.UniqueName)
		}
	}
	for _, s := range m.SideInputs {
		if len(s.Files) > 0 {
			return fmt.Errorf("side inputs of %q: data files in a native savepoint", s.UniqueName)
		}
	}
	ranges := map[string][]KeyGroupRange{}
	subtasks := map[string]map[int]bool{}
	for _, d := range m.Native {
		what := fmt.Sprintf("native DB of subtask %d of stage %q", d.Subtask, d.Stage)
		if d.Stage == "" || d.Subtask < 0 {
			return fmt.Errorf("%s: no stage, or a negative subtask", what)
		}
		if subtasks[d.Stage] == nil {
			subtasks[d.Stage] = map[int]bool{}
		}
		if subtasks[d.Stage][d.Subtask] {
			return fmt.Errorf("%s: listed twice", what)
		}
		subtasks[d.Stage][d.Subtask] = true
		k := d.Keys
		if k.Start < 0 || k.Start >= k.End || k.End > v.maxP {
			return fmt.Errorf("%s: key groups [%d, %d) empty or outside [0, %d)", what, k.Start, k.End, v.maxP)
		}
		for _, r := range ranges[d.Stage] {
			if k.Start < r.End && r.Start < k.End {
				return fmt.Errorf("%s: key groups [%d, %d) overlap [%d, %d) of another subtask", what, k.Start, k.End, r.Start, r.End)
			}
		}
		ranges[d.Stage] = append(ranges[d.Stage], k)
		if len(d.Files) == 0 {
			return fmt.Errorf("%s: no files", what)
		}
		locals := map[string]bool{}
		for _, f := range d.Files {
			if err := v.file(f.File); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			if f.KeyGroups != nil || f.Records != 0 {
				return fmt.Errorf("%s: file %q has key groups or records", what, f.Path)
			}
			if f.Local == "" || f.Local == "." || f.Local == ".." || strings.ContainsAny(f.Local, `/\`) || locals[f.Local] {
				return fmt.Errorf("%s: file %q: local name %q is not a file name, or is listed twice", what, f.Path, f.Local)
			}
			locals[f.Local] = true
		}
	}
	return nil
}

// canonicalNative sorts the native DBs and their files.
func canonicalNative(dbs []NativeDB) []NativeDB {
	out := slices.Clone(dbs)
	slices.SortFunc(out, func(a, b NativeDB) int {
		return cmp.Or(strings.Compare(a.Stage, b.Stage), cmp.Compare(a.Subtask, b.Subtask))
	})
	for i := range out {
		out[i].Files = slices.SortedStableFunc(slices.Values(out[i].Files), func(a, b NativeFile) int { return strings.Compare(a.Path, b.Path) })
	}
	return out
}

// NativeFile copies one file of the Pebble checkpoint of subtask subtask of
// stage into the savepoint, from r, under a path of the writer's choosing,
// and returns it for the DB's Files in the metadata given to Commit.
func (w *Writer) NativeFile(ctx context.Context, stage string, subtask int, local string, r io.Reader) (NativeFile, error) {
	fail := func(err error) (NativeFile, error) {
		return NativeFile{}, fmt.Errorf("savepoint: native file %s of subtask %d of %q in %s/%s: %w", local, subtask, stage, w.st, w.dir, err)
	}
	if local == "" || strings.ContainsAny(local, `/\`) || local == "." || local == ".." {
		return fail(fmt.Errorf("not a file name"))
	}
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return fail(fmt.Errorf("the savepoint is committed"))
	}
	key := ownerKey{sectionNative, stage}
	o := w.owners[key]
	if o == nil {
		w.numbers[0]++
		o = &ownerFiles{number: w.numbers[0]}
		w.owners[key] = o
	}
	rel := fmt.Sprintf("native/%d/%d/%s", o.number, subtask, local)
	if _, ok := w.written[rel]; ok {
		w.mu.Unlock()
		return fail(fmt.Errorf("written already"))
	}
	w.mu.Unlock()
	size, sum, err := storage.PutHashed(ctx, w.st, join(w.dir, rel), r)
	if err != nil {
		return fail(err)
	}
	f := NativeFile{File: File{Path: rel, Size: size, SHA256: sum}, Local: local}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written[rel] = writtenFile{owner: key, file: f.File}
	return f, nil
}

// nativeFiles yields the native files m lists, with their owner keys.
func (m *Metadata) nativeFiles(yield func(ownerKey, File) bool) {
	for _, d := range m.Native {
		for _, f := range d.Files {
			if !yield(ownerKey{sectionNative, d.Stage}, f.File) {
				return
			}
		}
	}
}

// verifyNative reads every native file in full and checks its size and
// SHA-256.
func (s *Savepoint) verifyNative(ctx context.Context) error {
	for _, f := range s.meta.nativeFiles {
		r, err := s.st.Get(ctx, join(s.dir, f.Path))
		if err != nil {
			return fmt.Errorf("savepoint: opening native file %s: %w", s.name(f.Path), err)
		}
		h := sha256.New()
		n, err := io.Copy(h, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("savepoint: reading native file %s: %w", s.name(f.Path), err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != f.Size || sum != f.SHA256 {
			return fmt.Errorf("savepoint: native file %s: %w: %d bytes of sha256:%s, the metadata records %d bytes of sha256:%s",
				s.name(f.Path), ErrCorrupt, n, sum, f.Size, f.SHA256)
		}
	}
	return nil
}

// Storage is the store the savepoint is read from, and Dir its directory
// there: a native DB's files are Dir()/Path in it.
func (s *Savepoint) Storage() storage.Storage { return s.st }

// Files yields every file m lists: the pipeline, the data files, and a
// native savepoint's Pebble files (what the savepoint is, on disk).
func (m *Metadata) Files() iter.Seq[File] {
	return func(yield func(File) bool) {
		if !yield(m.Pipeline) {
			return
		}
		for _, f := range m.dataFiles() {
			if !yield(f) {
				return
			}
		}
		for _, f := range m.nativeFiles {
			if !yield(f) {
				return
			}
		}
	}
}
