package rewrite

import (
	"context"
	"fmt"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// Moving records: copying an owner's files as they are (but for dropped
// states and timer families), or regrouping its keyed records by the key
// groups of their keys under a new max parallelism.

// keyedFields returns a keyed record's key and a pointer to its key group
// (ok false for unkeyed records).
func keyedFields(r savepoint.Record) (key []byte, kg *int, ok bool) {
	switch r := r.(type) {
	case *savepoint.StateRecord:
		return r.Key, &r.KeyGroup, true
	case *savepoint.TimerRecord:
		return r.Key, &r.KeyGroup, true
	case *savepoint.GroupValueRecord:
		return r.Key, &r.KeyGroup, true
	case *savepoint.TriggerRecord:
		return r.Key, &r.KeyGroup, true
	}
	return nil, nil, false
}

// kept reports whether r survives the drops of its owner.
func (o *owner) kept(r savepoint.Record) bool {
	switch r := r.(type) {
	case *savepoint.StateRecord:
		return !o.dropIDs[r.StateID]
	case *savepoint.TimerRecord:
		return !o.dropIDs[r.Family]
	}
	return true
}

// each calls fn with every record of the source file f that o keeps.
func (rw *rewriter) each(ctx context.Context, o *owner, f savepoint.File, fn func(savepoint.Record) error) error {
	return rw.src.Each(ctx, f.Path, func(r savepoint.Record) error {
		if !o.kept(r) {
			return nil
		}
		return fn(r)
	})
}

// out is one data file of the new savepoint, started at its first record
// (an owner's file with no record left is not written).
type out struct {
	rw   *rewriter
	o    *owner
	kgs  *savepoint.KeyGroupRange
	file *savepoint.RecordWriter
}

func (f *out) write(ctx context.Context, r savepoint.Record) error {
	if f.file == nil {
		var err error
		if f.file, err = f.rw.w.File(ctx, f.o.sec, f.o.name, f.kgs); err != nil {
			return err
		}
	}
	f.rw.records++
	return f.file.Write(r)
}

// close finishes the file, if any, and lists it under its owner.
func (f *out) close() error {
	if f.file == nil {
		return nil
	}
	file, err := f.file.Close()
	f.file = nil
	if err != nil {
		return err
	}
	*f.o.newFiles = append(*f.o.newFiles, file)
	return nil
}

func (f *out) abort() {
	if f.file != nil {
		f.file.Abort()
	}
}

// copyFiles writes a new file for each of o's files (same key-group range,
// if keyed) with the records o keeps, in their order.
func (rw *rewriter) copyFiles(ctx context.Context, o *owner) error {
	for _, f := range o.files {
		dst := &out{rw: rw, o: o, kgs: f.KeyGroups}
		err := rw.each(ctx, o, f, func(r savepoint.Record) error { return dst.write(ctx, r) })
		if err == nil {
			err = dst.close()
		}
		if err != nil {
			dst.abort()
			return err
		}
	}
	return nil
}

// regroup writes o's keyed records into one file per key-group range of
// rw.parallelism parts of rw.maxP key groups, each record with its key's
// key group under rw.maxP (state.KeyGroup); a key's records keep their
// order. It reads o's files once per range and holds one range's records.
func (rw *rewriter) regroup(ctx context.Context, o *owner) error {
	oldMaxP := rw.src.Metadata().MaxParallelism
	for part := range rw.parallelism {
		lo, hi := state.KeyGroupRange(part, rw.parallelism, rw.maxP)
		if lo == hi {
			continue
		}
		groups := make([][]savepoint.Record, hi-lo)
		for _, f := range o.files {
			err := rw.each(ctx, o, f, func(r savepoint.Record) error {
				key, kg, ok := keyedFields(r)
				if !ok {
					return fmt.Errorf("a %T in keyed file %s", r, f.Path)
				}
				if want := state.KeyGroup(key, oldMaxP); *kg != want {
					return fmt.Errorf("file %s: a record of key %x in key group %d, but the key hashes to key group %d of %d: the savepoint was not written by weir's key grouping, so its records cannot be regrouped by their keys",
						f.Path, key, *kg, want, oldMaxP)
				}
				*kg = state.KeyGroup(key, rw.maxP)
				if lo <= *kg && *kg < hi {
					groups[*kg-lo] = append(groups[*kg-lo], r)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		dst := &out{rw: rw, o: o, kgs: &savepoint.KeyGroupRange{Start: lo, End: hi}}
		err := func() error {
			for _, g := range groups {
				for _, r := range g {
					if err := dst.write(ctx, r); err != nil {
						return err
					}
				}
			}
			return dst.close()
		}()
		if err != nil {
			dst.abort()
			return err
		}
	}
	return nil
}
