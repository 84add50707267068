package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// Starting from a native savepoint (savepoint/native.go): each stateful
// subtask restores the Pebble files of the savepoint's subtask whose key
// groups hold its own, as it would a checkpoint's, and clips the DB to its
// key groups (state.DB.Clip: Pebble excises the rest, rewriting nothing);
// the parked input of a savepoint subtask goes to the new subtask that
// holds its first key group. So a native savepoint restores at its own
// parallelism or a multiple of it, into the stages and transform IDs it
// was taken from, with no state migrated, renamed or dropped; anything
// else is refused before the job starts, with what differs and the fix (a
// canonical savepoint).

// fixNative is the fix of every refusal of a native savepoint.
const fixNative = "take a canonical savepoint of the job (weir savepoint take --type=canonical), which restores into a changed pipeline at any parallelism"

// checkNative refuses a native savepoint m whose state does not go, as it
// is, into the job's stages at its parallelism (plan p, src's mapping),
// and returns its DBs by stage.
func (e *Engine) checkNative(src *SavepointSource, m *savepoint.Metadata, p *RestorePlan) (map[string][]savepoint.NativeDB, error) {
	fail := func(format string, args ...any) (map[string][]savepoint.NativeDB, error) {
		return nil, fmt.Errorf("native savepoint %s does not fit the job: %s; %s", p.Savepoint, fmt.Sprintf(format, args...), fixNative)
	}
	if len(src.Rename) > 0 {
		return fail("--transform_name_mapping renames state, and a native savepoint's keys carry the transform IDs it was taken with")
	}
	for _, s := range p.Steps {
		if s.Action == PlanMigrate || s.Action == PlanDrop {
			return fail("the state of %s would be %s (%s), which only a canonical savepoint's records can be", s.describe(), s.Action, s.Why)
		}
	}
	stages := map[string]*plan.Stage{}
	for _, s := range e.plan.Stages {
		stages[s.Name] = s
	}
	comps := e.plan.Components
	name := func(id string) string { return comps.GetTransforms()[id].GetUniqueName() }
	byStage := map[string][]savepoint.NativeDB{}
	for _, d := range m.Native {
		s := stages[d.Stage]
		if s == nil {
			return fail("its state of stage %q has no stage of that name in the pipeline", d.Stage)
		}
		for n, id := range d.Transforms {
			if !slices.Contains(s.Transforms, id) || name(id) != n {
				return fail("transform %q had ID %q in stage %q; the pipeline gives that stage %s", n, id, d.Stage, describeIDs(s, name))
			}
		}
		if now := nativeSides(s, name); !slices.Equal(now, d.SideInputs) {
			return fail("stage %q read side inputs %q, now %q", d.Stage, d.SideInputs, now)
		}
		byStage[d.Stage] = append(byStage[d.Stage], d)
	}
	for st, dbs := range byStage {
		par := e.parallelism(stages[st])
		for i := range par {
			lo, hi := state.KeyGroupRange(i, par, e.o.MaxParallelism)
			if nativeSource(dbs, lo, hi) == nil {
				return fail("at parallelism %d, subtask %d of stage %q holds key groups [%d, %d), which span subtasks of the savepoint (taken at parallelism %d): start the job at %d or a multiple of it",
					par, i, st, lo, hi, m.Parallelism, m.Parallelism)
			}
		}
	}
	return byStage, nil
}

// describeIDs lists a stage's transforms as ID (unique name).
func describeIDs(s *plan.Stage, name func(string) string) string {
	var out []string
	for _, id := range s.Transforms {
		out = append(out, fmt.Sprintf("%s (%q)", id, name(id)))
	}
	return fmt.Sprint(out)
}

// nativeSource is the DB of dbs whose key groups hold [lo, hi), or nil.
func nativeSource(dbs []savepoint.NativeDB, lo, hi int) *savepoint.NativeDB {
	for i := range dbs {
		if dbs[i].Keys.Start <= lo && hi <= dbs[i].Keys.End {
			return &dbs[i]
		}
	}
	return nil
}

// openNative opens subtask s's DB in dir from the native savepoint: the
// files of the savepoint subtask that held its key groups, clipped to
// them (a fresh DB if the savepoint has no state of its stage).
func (r *spRestore) openNative(ctx context.Context, s *subtask, dir string, opts state.Options) (*state.DB, error) {
	e := s.e
	p := e.parallelism(s.stage)
	lo, hi := state.KeyGroupRange(s.index, p, e.o.MaxParallelism)
	d := nativeSource(r.native[s.stage.Name], lo, hi)
	opts.Dir = dir
	if d == nil {
		return state.Open(opts)
	}
	if err := r.nativeFiles(ctx, d, p, e.o.MaxParallelism, filepath.Dir(dir), dir); err != nil {
		return nil, fmt.Errorf("native savepoint %s, subtask %d of stage %q: %w", r.plan.Savepoint, d.Subtask, d.Stage, err)
	}
	opts.MustExist = true
	db, err := state.Open(opts)
	if err != nil {
		return nil, err
	}
	keepParked := lo <= d.Keys.Start && d.Keys.Start < hi
	if lo != d.Keys.Start || hi != d.Keys.End {
		var prefixes [][]byte
		if s.stage.Kind == plan.KindGBK {
			prefixes = [][]byte{nil, []byte(gTransform)}
		}
		if err := db.Clip(ctx, lo, hi, e.o.MaxParallelism, prefixes, keepParked); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// nativeStaging is the files of one savepoint subtask, downloaded once
// into a directory of the run's for the new subtasks that restore from
// them (at twice the parallelism, two).
type nativeStaging struct {
	once  sync.Once
	dir   string
	err   error
	users int // the new subtasks still to take the files
}

// nativeFiles puts the files of savepoint subtask d into dir for a new
// subtask at parallelism p (of maxP key groups): downloaded (and checked) once into a staging
// directory under runDir, then each sstable hard-linked (Pebble never
// changes one; a compaction unlinks it) and the other, small files
// (manifest, options, markers, log) copied, which a DB does change.
func (r *spRestore) nativeFiles(ctx context.Context, d *savepoint.NativeDB, p, maxP int, runDir, dir string) error {
	key := fmt.Sprintf("%s\x00%s\x00%d", runDir, d.Stage, d.Subtask)
	r.stagingMu.Lock()
	st := r.staging[key]
	if st == nil {
		st = &nativeStaging{}
		for i := range p {
			if lo, hi := state.KeyGroupRange(i, p, maxP); lo < d.Keys.End && hi > d.Keys.Start {
				st.users++
			}
		}
		r.staging[key] = st
	}
	r.stagingMu.Unlock()
	st.once.Do(func() {
		if st.dir, st.err = os.MkdirTemp(runDir, "savepoint-native-"); st.err != nil {
			return
		}
		files := make([]checkpoint.File, len(d.Files))
		for i, f := range d.Files {
			files[i] = checkpoint.File{Local: f.Local, Remote: f.Path, Size: f.Size, SHA256: f.SHA256}
		}
		st.err = checkpoint.RestoreFiles(ctx, r.sp.Storage(), r.sp.Dir(), files, st.dir)
	})
	defer func() {
		r.stagingMu.Lock()
		defer r.stagingMu.Unlock()
		if st.users--; st.users <= 0 && st.dir != "" {
			os.RemoveAll(st.dir)
		}
	}()
	if st.err != nil {
		return st.err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range d.Files {
		from, to := filepath.Join(st.dir, f.Local), filepath.Join(dir, f.Local)
		if strings.HasSuffix(f.Local, ".sst") && os.Link(from, to) == nil {
			continue
		}
		if err := copyFile(from, to); err != nil {
			return err
		}
	}
	return storage.SyncDir(dir)
}

// copyFile copies the file at from to a new file at to, synced.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
