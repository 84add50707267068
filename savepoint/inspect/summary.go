package inspect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
)

// Summary is what a savepoint holds, in brief: the first line `weir
// savepoint inspect` prints.
type Summary struct {
	URL            string
	Job, ID        string
	Created        time.Time
	MaxParallelism int
	Parallelism    int
	Type           savepoint.Format
	Size           int64 // of the pipeline, data files and native files
	Records        int64
	Files          int
	Transforms     []TransformSummary
	Groups         []string
	SideInputs     []string
	Sources        []string
	FiredImpulses  []string
}

// TransformSummary names a stateful transform's states and timer families.
type TransformSummary struct {
	Name   string
	States []string // "id (kind)"
	Timers []string // "id (domain)"
}

// Summarize returns the summary of the savepoint at url with metadata m.
func Summarize(url string, m *savepoint.Metadata) Summary {
	s := Summary{URL: url, Job: m.Job, ID: m.ID, Created: m.Created, MaxParallelism: m.MaxParallelism,
		Parallelism: m.Parallelism, Type: savepoint.Canonical, Size: m.Pipeline.Size, FiredImpulses: m.FiredImpulses}
	if m.IsNative() {
		s.Type = savepoint.Native
	}
	count := func(fs []savepoint.File) {
		for _, f := range fs {
			s.Size += f.Size
			s.Records += f.Records
			s.Files++
		}
	}
	for _, t := range m.Transforms {
		ts := TransformSummary{Name: t.UniqueName, States: []string{}, Timers: []string{}}
		for _, st := range t.States {
			ts.States = append(ts.States, fmt.Sprintf("%s (%s)", st.ID, st.Kind))
		}
		for _, tf := range t.Timers {
			ts.Timers = append(ts.Timers, fmt.Sprintf("%s (%s)", tf.ID, tf.Domain))
		}
		s.Transforms = append(s.Transforms, ts)
		count(t.Files)
	}
	for _, g := range m.Groups {
		s.Groups = append(s.Groups, g.UniqueName)
		count(g.Files)
	}
	for _, si := range m.SideInputs {
		s.SideInputs = append(s.SideInputs, si.UniqueName)
		count(si.Files)
	}
	for _, src := range m.Sources {
		s.Sources = append(s.Sources, src.UniqueName)
		count(src.Files)
	}
	for _, d := range m.Native {
		for _, f := range d.Files {
			s.Size += f.Size
			s.Files++
		}
	}
	return s
}

// MarshalJSON implements json.Marshaler: {"kind":"savepoint","path",
// "job","id","created","max_parallelism","parallelism","type","size","files",
// "records","transforms":[{"name","states","timers"}],"groups",
// "side_inputs","sources","fired_impulses"}, lists never null.
func (s Summary) MarshalJSON() ([]byte, error) {
	ts := make([]object, len(s.Transforms))
	for i, t := range s.Transforms {
		ts[i] = object{{"name", t.Name}, {"states", t.States}, {"timers", t.Timers}}
	}
	list := func(l []string) []string { return append([]string{}, l...) }
	return object{{"kind", "savepoint"}, {"path", s.URL}, {"job", s.Job}, {"id", s.ID}, {"created", s.Created.UTC().Format(time.RFC3339Nano)},
		{"max_parallelism", s.MaxParallelism}, {"parallelism", s.Parallelism}, {"type", s.Type}, {"size", s.Size}, {"files", s.Files}, {"records", s.Records},
		{"transforms", ts}, {"groups", list(s.Groups)}, {"side_inputs", list(s.SideInputs)}, {"sources", list(s.Sources)},
		{"fired_impulses", list(s.FiredImpulses)}}.MarshalJSON()
}

// Listing is what List finds in a directory.
type Listing struct {
	// Savepoints are the committed savepoints, newest first.
	Savepoints []Summary
	// Incomplete are directories named like savepoints that have no
	// _metadata: failed or unfinished attempts, not savepoints.
	Incomplete []Incomplete
	// Unreadable are committed savepoints whose metadata does not open.
	Unreadable []error
}

// Incomplete is a savepoint directory without _metadata.
type Incomplete struct {
	URL   string
	Files int
}

// List finds the savepoint directories (savepoint-<job>-<id>) at the top
// of st: those committed (with a _metadata), read and sorted newest first,
// and those without (Incomplete). It only reads.
func List(ctx context.Context, st storage.Storage) (*Listing, error) {
	names, err := st.List(ctx, "savepoint-")
	if err != nil {
		return nil, fmt.Errorf("inspect: listing savepoints in %s: %w", st, err)
	}
	files := map[string]int{}
	committed := map[string]bool{}
	var dirs []string
	for _, n := range names {
		dir, rel, ok := strings.Cut(n, "/")
		if !ok {
			continue
		}
		if _, _, err := savepoint.ParseDirName(dir); err != nil {
			continue
		}
		if files[dir] == 0 {
			dirs = append(dirs, dir)
		}
		files[dir]++
		committed[dir] = committed[dir] || rel == savepoint.MetadataBase
	}
	l := &Listing{}
	for _, dir := range dirs {
		if !committed[dir] {
			l.Incomplete = append(l.Incomplete, Incomplete{URL: DirURL(st, dir), Files: files[dir]})
			continue
		}
		sp, err := savepoint.Open(ctx, st, dir)
		if err != nil {
			l.Unreadable = append(l.Unreadable, err)
			continue
		}
		l.Savepoints = append(l.Savepoints, Summarize(DirURL(st, dir), sp.Metadata()))
	}
	slices.SortStableFunc(l.Savepoints, func(a, b Summary) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(b.URL, a.URL)
	})
	return l, nil
}

// Dispose deletes the savepoint in directory dir of st, at the user's
// request (weir never deletes a savepoint on its own). It opens the
// savepoint first and refuses anything that is not one; then it deletes
// _metadata first, so that a dispose cut short leaves no directory that
// passes for a whole savepoint, then the pipeline, data files and native files the
// metadata lists. Other files in the directory are not the savepoint's
// and stay: it returns their names (left) with the number of files
// deleted.
func Dispose(ctx context.Context, st storage.Storage, dir string) (deleted int, left []string, err error) {
	if dir == "" {
		return 0, nil, errors.New("inspect: dispose: a savepoint directory inside a store is needed, not a store's root")
	}
	sp, err := savepoint.Open(ctx, st, dir)
	if err != nil {
		return 0, nil, fmt.Errorf("inspect: dispose: %w", err)
	}
	names := []string{savepoint.MetadataBase}
	for f := range sp.Metadata().Files() {
		names = append(names, f.Path)
	}
	for _, rel := range names {
		if err := st.Delete(ctx, dir+"/"+rel); err != nil {
			return deleted, nil, fmt.Errorf("inspect: dispose %s: deleting %s after %d files (_metadata first): %w", DirURL(st, dir), rel, deleted, err)
		}
		deleted++
	}
	if left, err = st.List(ctx, dir+"/"); err != nil {
		return deleted, nil, fmt.Errorf("inspect: dispose %s: listing what is left: %w", DirURL(st, dir), err)
	}
	return deleted, left, nil
}
