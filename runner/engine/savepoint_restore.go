package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
	"github.com/weir-runner/weir/state/portable"
	"google.golang.org/protobuf/proto"
)

// Starting from a savepoint. A run that restores no checkpoint of its own
// (the first, or a restart before its first checkpoint) starts from the
// savepoint instead: each stateful subtask opens a fresh DB and imports
// the records of its key-group range (state/portable), at whatever
// parallelism the job now has; side inputs go to every subtask that reads
// them and parked input to one; a splittable stage's subtasks share the
// source residuals; an Impulse that had fired does not fire again. State
// is matched by transform unique name; the savepoint is only read.

// SavepointSource is the savepoint a job starts from.
type SavepointSource struct {
	Storage storage.Storage // rooted at the directory that holds it
	Dir     string          // the savepoint's directory in Storage
	// AllowNonRestored lets the job start when the savepoint holds state
	// of transforms (or states) the pipeline no longer has; it is dropped.
	AllowNonRestored bool
	// Rename maps the savepoint's transform unique-name prefixes to the
	// pipeline's (Dataflow's --transform_name_mapping): a name equal to a
	// key, or under it ("key/..."), takes the longest matching key's value
	// in its place; "" drops the state.
	Rename map[string]string
}

// renamed is the pipeline's name for the savepoint's unique name n, and
// false if the mapping drops its state.
func (src *SavepointSource) renamed(n string) (string, bool) {
	return savepoint.Rename(src.Rename, n)
}

// spRestore is the savepoint a job starts from, open and checked against
// the plan.
type spRestore struct {
	sp    *savepoint.Savepoint
	allow bool
	// lists are the savepoint's files by owner, under the pipeline's
	// names (renamed).
	lists map[portable.Owner]*[]savepoint.File
	fired map[string]bool
	kinds map[[2]string]savepoint.StateKind // the plan's (transform, state) → kind
	plan  *RestorePlan
	// native are a native savepoint's DBs by stage (nil if canonical).
	native map[string][]savepoint.NativeDB
	// staging are the savepoint subtasks' files as downloaded for the new
	// subtasks of a run (savepoint_native.go).
	stagingMu sync.Mutex
	staging   map[string]*nativeStaging
}

// SavepointPlan is where the state of the savepoint the job would start
// from goes in its pipeline (--savepoint_plan_only): nothing runs, and a
// plan that refuses the job is not an error.
func (e *Engine) SavepointPlan(ctx context.Context) (*RestorePlan, error) {
	if e.o.FromSavepoint == nil {
		return nil, errors.New("no savepoint to plan a restore of: set --savepoint_path")
	}
	sp, p, err := e.planSavepoint(ctx, e.o.FromSavepoint, true)
	if err == nil && sp.Metadata().IsNative() {
		if _, nerr := e.checkNative(e.o.FromSavepoint, sp.Metadata(), p); nerr != nil {
			p.Native = nerr.Error()
		}
	}
	return p, err
}

// planSavepoint opens the savepoint src, reading every data file in full
// if verify, and plans its restore into the job's pipeline
// (savepoint_compat.go). Its metadata and pipeline are checked either
// way.
func (e *Engine) planSavepoint(ctx context.Context, src *SavepointSource, verify bool) (*savepoint.Savepoint, *RestorePlan, error) {
	sp, err := savepoint.Open(ctx, src.Storage, src.Dir)
	if err != nil {
		return nil, nil, err
	}
	if verify {
		if err := sp.Verify(ctx); err != nil {
			return nil, nil, err
		}
	}
	m := sp.Metadata()
	where := fmt.Sprintf("%s/%s", src.Storage, src.Dir)
	if m.MaxParallelism != e.o.MaxParallelism {
		return nil, nil, fmt.Errorf("savepoint %s has %d key groups (max parallelism), the job %d: start the job with --max_parallelism=%d, or rewrite the savepoint's (weir savepoint rewrite --max_parallelism)", where, m.MaxParallelism, e.o.MaxParallelism, m.MaxParallelism)
	}
	pb, err := sp.Pipeline(ctx)
	if err != nil {
		return nil, nil, err
	}
	var old pipepb.Pipeline
	if err := proto.Unmarshal(pb, &old); err != nil {
		return nil, nil, fmt.Errorf("savepoint %s: the pipeline %s: %w: not a Beam pipeline proto: %w", where, savepoint.PipelineBase, savepoint.ErrCorrupt, err)
	}
	p := planRestore(compatInput{where: where, old: m, now: e.savepointDecls(), oldComps: old.GetComponents(), newComps: e.plan.Components,
		rename: src.renamed, allow: src.AllowNonRestored})
	return sp, p, nil
}

// openSavepoint opens the savepoint the job starts from and refuses it,
// before anything runs, if its key groups differ, it holds state the plan
// has no place for (unless that is allowed), or state that does not fit
// the pipeline (planRestore). Its data files are checked as the subtasks
// import them, before any task runs (a data file whose state is dropped
// is not read).
func (e *Engine) openSavepoint(ctx context.Context, src *SavepointSource) (*spRestore, error) {
	sp, p, err := e.planSavepoint(ctx, src, false)
	if err != nil {
		return nil, err
	}
	if err := p.Err(); err != nil {
		return nil, err
	}
	var dropped []string
	for _, s := range p.Steps {
		switch s.Action {
		case PlanMigrate:
			e.o.Logger.Info("state of the savepoint migrated", "savepoint", p.Savepoint, "transform", s.To, "state", s.ID, "how", s.Why)
		case PlanDrop:
			dropped = append(dropped, fmt.Sprintf("%s: %s", s.describe(), s.Why))
		}
	}
	if len(dropped) > 0 {
		e.o.Logger.Warn("state of the savepoint not restored", "savepoint", p.Savepoint, "dropped", dropped)
	}
	m := sp.Metadata()
	r := &spRestore{sp: sp, allow: src.AllowNonRestored, lists: map[portable.Owner]*[]savepoint.File{},
		fired: map[string]bool{}, kinds: map[[2]string]savepoint.StateKind{}, plan: p, staging: map[string]*nativeStaging{}}
	if m.IsNative() {
		if r.native, err = e.checkNative(src, m, p); err != nil {
			return nil, err
		}
	}
	for o, files := range fileLists(m) {
		if n, ok := src.renamed(o.Name); ok {
			r.lists[portable.Owner{Section: o.Section, Name: n}] = files
		}
	}
	for _, n := range m.FiredImpulses {
		if n, ok := src.renamed(n); ok {
			r.fired[n] = true
		}
	}
	for _, t := range e.savepointDecls().Transforms {
		for _, s := range t.States {
			r.kinds[[2]string{t.UniqueName, s.ID}] = s.Kind
		}
	}
	return r, nil
}

// importInto writes into db, the fresh DB of subtask s, what the savepoint
// holds for s: the state and timers of its transforms and of its
// GroupByKey in its key-group range, its side inputs, and its share of
// the parked input.
func (r *spRestore) importInto(ctx context.Context, s *subtask, db *state.DB) error {
	e, stage := s.e, s.stage
	comps := e.plan.Components
	maxP := e.o.MaxParallelism
	p := e.parallelism(stage)
	lo, hi := state.KeyGroupRange(s.index, p, maxP)
	ids := map[string]string{}
	var owners []portable.Owner
	for _, id := range stage.Transforms {
		n := comps.GetTransforms()[id].GetUniqueName()
		ids[n] = id
		owners = append(owners, portable.Owner{Section: savepoint.SectionTransforms, Name: n})
	}
	t := portable.Target{
		Transforms: func(n string) (string, bool) { id, ok := ids[n]; return id, ok },
		StateKind: func(n, id string) (savepoint.StateKind, bool) {
			k, ok := r.kinds[[2]string{n, id}]
			return k, ok
		},
		AllowNonRestored: r.allow,
		RunBytes:         e.o.Limits.ImportRunBytes,
		Migrate: func(n, id string) func([]byte) ([]byte, error) {
			if m := r.plan.migrations[[2]string{n, id}]; m != nil {
				return m.Migrate
			}
			return nil
		},
	}
	if stage.Kind == plan.KindGBK {
		wc, err := wire.Build(comps.GetCoders(), e.plan.PColls[stage.Input].WireCoder)
		if err != nil {
			return err
		}
		wv, err := wire.NewWV(wc)
		if err != nil {
			return err
		}
		t.Group = &portable.Group{Name: stage.Name, Prefix: []byte(gTransform), Transform: gTransform, ValuesCell: cellValues,
			WindowFirst: stage.WindowingStrategy.GetWindowFn().GetUrn() != plan.URNSessions, Triggered: triggered(stage),
			MaxTimestamp: func(w []byte) (int64, error) { return wire.WindowMaxTimestamp(wv.Window, w) }}
		owners = append(owners, portable.Owner{Section: savepoint.SectionGroups, Name: stage.Name})
	}
	if len(stage.SideInputs) > 0 {
		parked := comps.GetTransforms()[stage.SideInputs[0].Transform].GetUniqueName()
		t.SideInput = func(owner, local string) (int, bool, bool) {
			for i, si := range stage.SideInputs {
				if comps.GetTransforms()[si.Transform].GetUniqueName() == owner && si.Local == local {
					return i, si.Multimap, true
				}
			}
			return 0, false, false
		}
		t.Parked = func(owner string, n int) (take, known bool) { return n%p == s.index, owner == parked }
		for _, si := range stage.SideInputs {
			o := portable.Owner{Section: savepoint.SectionSideInputs, Name: comps.GetTransforms()[si.Transform].GetUniqueName()}
			if !slices.Contains(owners, o) {
				owners = append(owners, o)
			}
		}
	}
	if stage.Stateful {
		k, err := newKeyed(db, stage, comps, lo, hi, maxP)
		if err != nil {
			return err
		}
		// Expiry timers are not in a savepoint: each restored cell's
		// window gets its own again.
		t.OnUserState = func(b *state.Bundle, c state.Cell) error {
			at, ok := k.expiry(c.Window)
			if !ok {
				return nil
			}
			return b.PutFixedTimer(state.Timer{
				TimerID: state.TimerID{KeyGroup: c.KeyGroup, Domain: gcDomain, Transform: gcTransform, Key: c.Key, Window: c.Window},
				Fire:    at, Hold: wire.MaxTimestamp,
			})
		}
	}
	im, err := portable.NewImporter(db, lo, hi, t)
	if err != nil {
		return err
	}
	for _, o := range owners {
		files := r.lists[o]
		if files == nil {
			continue
		}
		// In key-group order (the metadata lists them by path): so the
		// import's sorted runs do not overlap (state.Load).
		for _, f := range slices.SortedStableFunc(slices.Values(*files), byKeyGroups) {
			if f.KeyGroups != nil && (f.KeyGroups.End <= lo || f.KeyGroups.Start >= hi) {
				continue
			}
			err := r.sp.EachBorrowed(ctx, f.Path, func(rec savepoint.Record) error { // Import copies what it keeps
				if t, ok := rec.(*savepoint.TimerRecord); ok && r.plan.droppedTimers[[2]string{o.Name, t.Family}] {
					return nil // a timer family the pipeline no longer has (--allow_non_restored_state)
				}
				return im.Import(o, rec)
			})
			if err != nil {
				im.Abort()
				return err
			}
		}
	}
	if _, err := im.Close(); err != nil {
		return err
	}
	return nil
}

// byKeyGroups orders keyed files by their first key group.
func byKeyGroups(a, b savepoint.File) int {
	if a.KeyGroups == nil || b.KeyGroups == nil {
		return 0
	}
	return a.KeyGroups.Start - b.KeyGroups.Start
}

// residuals are subtask s's share of its splittable stage's residual
// restrictions (the n-th goes to subtask n mod parallelism).
func (r *spRestore) residuals(ctx context.Context, s *subtask) ([][]byte, error) {
	files := r.lists[portable.Owner{Section: savepoint.SectionSources, Name: s.stage.Name}]
	if files == nil {
		return nil, nil
	}
	p := s.e.parallelism(s.stage)
	var out [][]byte
	n := 0
	for _, f := range *files {
		err := r.sp.Each(ctx, f.Path, func(rec savepoint.Record) error {
			res, ok := rec.(*savepoint.ResidualRecord)
			if !ok {
				return errors.New("a source record that is not a residual")
			}
			if n%p == s.index {
				out = append(out, res.Restriction)
			}
			n++
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// firedImpulse says whether Impulse stage s had fired when the savepoint
// the run starts from was taken.
func (r *spRestore) firedImpulse(e *Engine, s *plan.Stage) bool {
	return r != nil && s.Kind == plan.KindImpulse && r.fired[e.plan.Components.GetTransforms()[s.Transforms[0]].GetUniqueName()]
}
