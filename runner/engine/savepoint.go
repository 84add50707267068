package engine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
	"github.com/weir-runner/weir/state/portable"
	"google.golang.org/protobuf/proto"
)

// Savepoints. A savepoint is a checkpoint taken now through the barrier
// path (aligned like any other: the job goes on while it is written),
// then written out in the portable format (package savepoint): each
// subtask's Pebble checkpoint is restored into a scratch directory and
// exported by state/portable, its sources' residual restrictions come
// from its engine state, and the metadata declares every stateful
// transform's states and timers, GroupByKeys, side inputs and sources
// from the pipeline. The checkpoint stays pinned (not deleted by
// retention) until the savepoint is written.

// Savepoint takes a savepoint of the running job into target: a checkpoint
// taken now through the barrier path, written in format (the portable
// records, or natively: its subtasks' Pebble files). It returns the
// savepoint directory's name relative to target once it is complete.
func (e *Engine) Savepoint(ctx context.Context, target storage.Storage, format savepoint.Format) (string, error) {
	c, err := e.liveCoordinator()
	if err != nil {
		return "", fmt.Errorf("savepoint: %w", err)
	}
	meta, release, err := c.checkpointNow(ctx)
	if err != nil {
		return "", fmt.Errorf("savepoint: %w", err)
	}
	defer release()
	dir, err := e.writeSavepoint(ctx, c, meta, target, format)
	if err != nil {
		return "", fmt.Errorf("savepoint of checkpoint %d into %s: %w", meta.CheckpointID, target, err)
	}
	e.o.Logger.Info("savepoint taken", "checkpoint", meta.CheckpointID, "target", target.String(), "dir", dir, "format", format)
	return dir, nil
}

// liveCoordinator is the checkpoint coordinator of the run under way, or
// why there is none.
func (e *Engine) liveCoordinator() (*coordinator, error) {
	if c := e.live.Load(); c != nil {
		return c, nil
	}
	if e.o.Checkpoint == nil || e.o.Checkpoint.Storage == nil {
		return nil, errors.New("the job takes no checkpoints, and a savepoint is a checkpoint written out: run it with --checkpoint_dir")
	}
	return nil, errors.New("the job is not running (starting, restarting, ended, or without checkpoints for a TestStream): try again when it runs")
}

// writeNewSavepoint writes savepoint <prefix>_<random> of the job into
// target: the pipeline, then what fill writes (it completes m, the
// pipeline's declarations), then m, the commit. If anything fails, what
// it wrote is deleted. It returns the savepoint's directory.
func (e *Engine) writeNewSavepoint(ctx context.Context, target storage.Storage, prefix string, fill func(w *savepoint.Writer, m *savepoint.Metadata) error) (string, error) {
	nonce := make([]byte, 3)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	id := fmt.Sprintf("%s_%x", prefix, nonce)
	job := e.o.Checkpoint.Job
	w, err := savepoint.Create(ctx, target, job, id)
	if err != nil {
		return "", err
	}
	m := e.savepointDecls()
	m.Job, m.ID, m.Created = job, id, e.now().UTC()
	m.MaxParallelism, m.Parallelism = e.o.MaxParallelism, min(e.o.Parallelism, e.o.MaxParallelism)
	err = func() error {
		pb, err := proto.Marshal(&pipepb.Pipeline{Components: e.plan.Components})
		if err != nil {
			return fmt.Errorf("encoding the pipeline: %w", err)
		}
		if m.Pipeline, err = w.Pipeline(ctx, pb); err != nil {
			return err
		}
		if err := fill(w, m); err != nil {
			return err
		}
		return w.Commit(ctx, m)
	}()
	if err != nil {
		// The attempt leaves nothing (a crash would leave an incomplete
		// directory, which no one takes for a savepoint).
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if aerr := w.Abort(actx); aerr != nil {
			e.o.Logger.Warn("deleting the files of a failed savepoint", "err", aerr)
		}
		return "", err
	}
	return w.Dir(), nil
}

// writeSavepoint writes checkpoint meta out as a savepoint in target, in
// format.
func (e *Engine) writeSavepoint(ctx context.Context, c *coordinator, meta *checkpoint.Metadata, target storage.Storage, format savepoint.Format) (string, error) {
	return e.writeNewSavepoint(ctx, target, fmt.Sprintf("c%d", meta.CheckpointID), func(w *savepoint.Writer, m *savepoint.Metadata) error {
		if format == savepoint.Native {
			m.Type = savepoint.Native
		}
		m.Created = meta.Created
		m.MaxParallelism, m.Parallelism = meta.MaxParallelism, min(e.o.Parallelism, meta.MaxParallelism)
		tmp, err := os.MkdirTemp(e.o.TempDir, "weir-savepoint-")
		if err != nil {
			return fmt.Errorf("scratch dir: %w", err)
		}
		defer os.RemoveAll(tmp)
		lists := fileLists(m)
		stages := map[string]*plan.Stage{}
		for _, s := range e.plan.Stages {
			stages[s.ID] = s
		}
		for i, st := range meta.Subtasks {
			s := stages[st.Stage]
			if s == nil {
				return fmt.Errorf("checkpoint %d has subtask %s of no stage of this plan", meta.CheckpointID, st.SubtaskID)
			}
			if s.Kind == plan.KindImpulse && st.Finished {
				m.FiredImpulses = append(m.FiredImpulses, meta.TransformNames[s.Transforms[0]])
			}
			if err := e.exportSubtask(ctx, c, meta, s, st, filepath.Join(tmp, strconv.Itoa(i)), w, m, lists); err != nil {
				return fmt.Errorf("subtask %s (stage %q): %w", st.SubtaskID, s.Name, err)
			}
		}
		slices.Sort(m.FiredImpulses)
		m.FiredImpulses = slices.Compact(m.FiredImpulses)
		return c.fault(FaultSavepointWrite, meta.CheckpointID)
	})
}

// exportSubtask writes one subtask's part of the savepoint m: its sources'
// residuals, then what its Pebble checkpoint holds (as records, or its
// files in a native savepoint).
func (e *Engine) exportSubtask(ctx context.Context, c *coordinator, meta *checkpoint.Metadata, s *plan.Stage, st checkpoint.SubtaskState, dbDir string, w *savepoint.Writer, m *savepoint.Metadata, lists map[portable.Owner]*[]savepoint.File) error {
	ts, err := decodeTaskState(st.SourcePosition)
	if err != nil {
		return err
	}
	var db *state.DB
	restored := len(st.Files) > 0
	if restored {
		if err := checkpoint.Restore(ctx, c.o.Storage, meta, st.SubtaskID, dbDir); err != nil {
			return err
		}
	}
	if restored && !m.IsNative() { // a native savepoint copies the files as they are
		if db, err = state.Open(state.Options{Dir: dbDir, MustExist: true, Cells: s.Kind == plan.KindSDK, Logger: e.o.Logger}); err != nil {
			return err
		}
		defer db.Close()
	}
	pending := ts.Pending
	if ts.PendingFile != "" {
		if !restored {
			return fmt.Errorf("a pending input file %s, but no state files", ts.PendingFile)
		}
		more, err := readPending(dbDir, ts.PendingFile)
		if err != nil {
			return err
		}
		pending = append(slices.Clip(pending), more...)
	}
	files := newSavepointFiles(w, st, e.savepointFileKeyGroups())
	defer files.abort()
	if s.Splittable != "" {
		// The source's position: its residual restrictions.
		src := portable.Owner{Section: savepoint.SectionSources, Name: s.Name}
		for _, p := range pending {
			if err := files.write(ctx, src, &savepoint.ResidualRecord{Restriction: p, Watermark: wire.MinTimestamp}); err != nil {
				return err
			}
		}
		for _, d := range ts.Delayed {
			if err := files.write(ctx, src, &savepoint.ResidualRecord{Restriction: d.Data, Watermark: d.WM}); err != nil {
				return err
			}
		}
	} else if len(pending) > 0 || len(ts.Delayed) > 0 {
		return fmt.Errorf("it held input it had not run at checkpoint %d (its inputs had ended); take the savepoint again", meta.CheckpointID)
	}
	if restored && m.IsNative() {
		if err := e.copyNative(ctx, s, st, meta, dbDir, w, m); err != nil {
			return err
		}
	} else if db != nil {
		src := portable.Source{Names: func(id string) (string, bool) {
			n, ok := meta.TransformNames[id]
			return n, ok
		}}
		if s.Kind == plan.KindGBK {
			src.Group = &portable.Group{Name: s.Name, Prefix: []byte(gTransform), Transform: gTransform, ValuesCell: cellValues,
				WindowFirst: s.WindowingStrategy.GetWindowFn().GetUrn() != plan.URNSessions}
		}
		if len(s.SideInputs) > 0 {
			src.SideInput = func(i int) (string, string, bool) {
				if i < 0 || i >= len(s.SideInputs) {
					return "", "", false
				}
				return meta.TransformNames[s.SideInputs[i].Transform], s.SideInputs[i].Local, true
			}
			src.Parked = meta.TransformNames[s.SideInputs[0].Transform]
		}
		sink := func(o portable.Owner, r savepoint.Record) error {
			if _, side := r.(*savepoint.SideInputRecord); side && st.Subtask != 0 {
				return nil // every subtask holds the side inputs: one copy
			}
			return files.write(ctx, o, r)
		}
		if err := portable.Export(db, st.KeyGroups.Start, st.KeyGroups.End, src, sink); err != nil {
			return err
		}
	}
	return files.close(lists)
}

// savepointFiles are the data files one subtask writes: per owner, one
// unkeyed file, or keyed files of at most perFile key groups each (the
// key groups a restore at a higher parallelism skips are whole files).
type savepointFiles struct {
	w       *savepoint.Writer
	kgs     savepoint.KeyGroupRange
	perFile int
	rws     map[portable.Owner]*savepoint.RecordWriter
	ends    map[portable.Owner]int // the end of each open keyed file's range
	ord     []portable.Owner
	closed  []ownedFile // keyed files closed as their owner moved past them
}

type ownedFile struct {
	o portable.Owner
	f savepoint.File
}

func newSavepointFiles(w *savepoint.Writer, st checkpoint.SubtaskState, perFile int) *savepointFiles {
	return &savepointFiles{w: w, kgs: savepoint.KeyGroupRange{Start: st.KeyGroups.Start, End: st.KeyGroups.End}, perFile: max(perFile, 1),
		rws: map[portable.Owner]*savepoint.RecordWriter{}, ends: map[portable.Owner]int{}}
}

func (f *savepointFiles) write(ctx context.Context, o portable.Owner, r savepoint.Record) error {
	rw := f.rws[o]
	kg, keyed := savepoint.KeyGroupOf(r)
	if rw != nil && keyed && kg >= f.ends[o] {
		// Records come in key-group order: the owner's file is complete.
		file, err := rw.Close()
		delete(f.rws, o)
		if err != nil {
			return err
		}
		f.closed = append(f.closed, ownedFile{o, file})
		rw = nil
	}
	if rw == nil {
		var kgs *savepoint.KeyGroupRange
		if o.Section == savepoint.SectionTransforms || o.Section == savepoint.SectionGroups {
			if !keyed || !f.kgs.Contains(kg) {
				return fmt.Errorf("a record of %s outside the subtask's key groups [%d, %d)", o, f.kgs.Start, f.kgs.End)
			}
			start := f.kgs.Start + (kg-f.kgs.Start)/f.perFile*f.perFile
			kgs = &savepoint.KeyGroupRange{Start: start, End: min(start+f.perFile, f.kgs.End)}
			f.ends[o] = kgs.End
		}
		var err error
		if rw, err = f.w.File(ctx, o.Section, o.Name, kgs); err != nil {
			return err
		}
		if !slices.Contains(f.ord, o) {
			f.ord = append(f.ord, o)
		}
		f.rws[o] = rw
	}
	return rw.Write(r)
}

// close closes every file and lists it under its owner (lists: fileLists).
func (f *savepointFiles) close(lists map[portable.Owner]*[]savepoint.File) error {
	for _, o := range f.ord {
		if rw := f.rws[o]; rw != nil {
			delete(f.rws, o)
			file, err := rw.Close()
			if err != nil {
				return err
			}
			f.closed = append(f.closed, ownedFile{o, file})
		}
	}
	for _, c := range f.closed {
		list := lists[c.o]
		if list == nil {
			return fmt.Errorf("state of %s, which the pipeline does not declare", c.o)
		}
		*list = append(*list, c.f)
	}
	return nil
}

func (f *savepointFiles) abort() {
	for _, rw := range f.rws {
		rw.Abort()
	}
}

// fileLists maps each owner m declares to its list of files (m's lists
// of declarations must not grow after this).
func fileLists(m *savepoint.Metadata) map[portable.Owner]*[]savepoint.File {
	out := map[portable.Owner]*[]savepoint.File{}
	for i := range m.Transforms {
		out[portable.Owner{Section: savepoint.SectionTransforms, Name: m.Transforms[i].UniqueName}] = &m.Transforms[i].Files
	}
	for i := range m.Groups {
		out[portable.Owner{Section: savepoint.SectionGroups, Name: m.Groups[i].UniqueName}] = &m.Groups[i].Files
	}
	for i := range m.SideInputs {
		out[portable.Owner{Section: savepoint.SectionSideInputs, Name: m.SideInputs[i].UniqueName}] = &m.SideInputs[i].Files
	}
	for i := range m.Sources {
		out[portable.Owner{Section: savepoint.SectionSources, Name: m.Sources[i].UniqueName}] = &m.Sources[i].Files
	}
	return out
}

// savepointDecls declares, from the pipeline, what a savepoint of it may
// hold: each stateful transform's states and timer families, each
// GroupByKey, the side inputs of each transform that reads them, and each
// source, with the coders that read them.
func (e *Engine) savepointDecls() *savepoint.Metadata {
	comps := e.plan.Components
	m := &savepoint.Metadata{}
	for _, s := range e.plan.Stages {
		switch s.Kind {
		case plan.KindGBK:
			key, value := kvCoders(comps, inputCoder(comps, s.Input))
			m.Groups = append(m.Groups, savepoint.Group{UniqueName: s.Name, KeyCoder: key, ValueCoder: value, WindowCoder: s.WindowingStrategy.GetWindowCoderId()})
		case plan.KindSDK:
			for _, id := range s.Transforms {
				if tr, ok := statefulDecl(comps, comps.GetTransforms()[id]); ok {
					m.Transforms = append(m.Transforms, tr)
				}
			}
			m.SideInputs = append(m.SideInputs, sideInputDecls(e.plan, s)...)
			if s.Splittable != "" {
				src := savepoint.Source{UniqueName: s.Name}
				if pc := e.plan.PColls[s.Input]; pc != nil {
					src.RestrictionCoder = pc.WireCoder
				}
				m.Sources = append(m.Sources, src)
			}
		}
	}
	return m
}

// statefulDecl declares a ParDo's states and timer families (ok false if
// it has none).
func statefulDecl(comps *pipepb.Components, t *pipepb.PTransform) (savepoint.Transform, bool) {
	if t.GetSpec().GetUrn() != plan.URNParDo {
		return savepoint.Transform{}, false
	}
	var pd pipepb.ParDoPayload
	if err := proto.Unmarshal(t.GetSpec().GetPayload(), &pd); err != nil || len(pd.GetStateSpecs())+len(pd.GetTimerFamilySpecs()) == 0 {
		return savepoint.Transform{}, false
	}
	main := mainInput(t)
	key, _ := kvCoders(comps, inputCoder(comps, main))
	win := comps.GetWindowingStrategies()[comps.GetPcollections()[main].GetWindowingStrategyId()].GetWindowCoderId()
	sum := sha256.Sum256(pd.GetDoFn().GetPayload())
	tr := savepoint.Transform{UniqueName: t.GetUniqueName(), DoFn: pd.GetDoFn().GetUrn() + "@" + hex.EncodeToString(sum[:8])}
	for _, id := range slices.Sorted(maps.Keys(pd.GetStateSpecs())) {
		spec := pd.GetStateSpecs()[id]
		d := savepoint.StateSpec{ID: id, KeyCoder: key, WindowCoder: win}
		switch {
		case spec.GetReadModifyWriteSpec() != nil:
			d.Kind, d.ValueCoder = savepoint.KindValue, spec.GetReadModifyWriteSpec().GetCoderId()
		case spec.GetBagSpec() != nil:
			d.Kind, d.ValueCoder = savepoint.KindBag, spec.GetBagSpec().GetElementCoderId()
		case spec.GetCombiningSpec() != nil:
			d.Kind, d.ValueCoder = savepoint.KindCombining, spec.GetCombiningSpec().GetAccumulatorCoderId()
		case spec.GetMapSpec() != nil:
			d.Kind, d.UserKeyCoder, d.ValueCoder = savepoint.KindMap, spec.GetMapSpec().GetKeyCoderId(), spec.GetMapSpec().GetValueCoderId()
		case spec.GetMultimapSpec() != nil:
			d.Kind, d.UserKeyCoder, d.ValueCoder = savepoint.KindMap, spec.GetMultimapSpec().GetKeyCoderId(), spec.GetMultimapSpec().GetValueCoderId()
		case spec.GetSetSpec() != nil:
			d.Kind, d.UserKeyCoder = savepoint.KindSet, spec.GetSetSpec().GetElementCoderId()
		case spec.GetOrderedListSpec() != nil:
			d.Kind, d.ValueCoder = savepoint.KindOrderedList, spec.GetOrderedListSpec().GetElementCoderId()
		default:
			continue
		}
		tr.States = append(tr.States, d)
	}
	for _, id := range slices.Sorted(maps.Keys(pd.GetTimerFamilySpecs())) {
		domain := savepoint.EventTime
		switch pd.GetTimerFamilySpecs()[id].GetTimeDomain() {
		case pipepb.TimeDomain_EVENT_TIME:
		case pipepb.TimeDomain_PROCESSING_TIME:
			domain = savepoint.ProcessingTime
		default:
			continue
		}
		tr.Timers = append(tr.Timers, savepoint.TimerFamily{ID: id, Domain: domain, KeyCoder: key, WindowCoder: win})
	}
	return tr, true
}

// sideInputDecls declares the side inputs of stage s, per transform that
// reads them; the first such transform owns the stage's parked input.
func sideInputDecls(p *plan.Plan, s *plan.Stage) []savepoint.SideInputs {
	comps := p.Components
	var out []savepoint.SideInputs
	for i, si := range s.SideInputs {
		name := comps.GetTransforms()[si.Transform].GetUniqueName()
		if len(out) == 0 || out[len(out)-1].UniqueName != name {
			out = append(out, savepoint.SideInputs{UniqueName: name})
			if i == 0 {
				if pc := p.PColls[s.Input]; pc != nil {
					out[0].InputCoder = pc.WireCoder
				}
			}
		}
		pc := comps.GetPcollections()[si.PColl]
		spec := savepoint.SideInputSpec{ID: si.Local, Kind: savepoint.SideIterable, ValueCoder: pc.GetCoderId(),
			WindowCoder: comps.GetWindowingStrategies()[pc.GetWindowingStrategyId()].GetWindowCoderId()}
		if si.Multimap {
			spec.Kind = savepoint.SideMultimap
			spec.KeyCoder, spec.ValueCoder = kvCoders(comps, pc.GetCoderId())
		}
		out[len(out)-1].Inputs = append(out[len(out)-1].Inputs, spec)
	}
	return out
}

// inputCoder is the element coder of PCollection pc.
func inputCoder(comps *pipepb.Components, pc string) string {
	return comps.GetPcollections()[pc].GetCoderId()
}

// kvCoders splits a KV coder into its key and value coders (the coder
// itself as the value if it is not a KV).
func kvCoders(comps *pipepb.Components, id string) (key, value string) {
	c := comps.GetCoders()[id]
	if c.GetSpec().GetUrn() == wire.URNKV && len(c.GetComponentCoderIds()) == 2 {
		return c.GetComponentCoderIds()[0], c.GetComponentCoderIds()[1]
	}
	return id, id
}

// copyNative copies subtask st's Pebble checkpoint, restored in dbDir, into
// native savepoint m: its files, and what a restore needs to find them and
// check that the pipeline still fits them (the stage, the transform IDs
// its keys carry, the order of its side inputs).
func (e *Engine) copyNative(ctx context.Context, s *plan.Stage, st checkpoint.SubtaskState, meta *checkpoint.Metadata, dbDir string, w *savepoint.Writer, m *savepoint.Metadata) error {
	d := savepoint.NativeDB{Stage: s.Name, Subtask: st.Subtask, Keys: savepoint.KeyGroupRange{Start: st.KeyGroups.Start, End: st.KeyGroups.End},
		Transforms: nativeTransforms(s, m, func(id string) string { return meta.TransformNames[id] }),
		SideInputs: nativeSides(s, func(id string) string { return meta.TransformNames[id] })}
	for _, f := range st.Files {
		r, err := os.Open(filepath.Join(dbDir, f.Local))
		if err != nil {
			return fmt.Errorf("native savepoint: %w", err)
		}
		nf, err := w.NativeFile(ctx, s.Name, st.Subtask, f.Local, r)
		r.Close()
		if err != nil {
			return err
		}
		d.Files = append(d.Files, nf)
	}
	m.Native = append(m.Native, d)
	return nil
}

// nativeTransforms maps the unique names of the stateful transforms of
// stage s (those m declares) to their IDs, the names given by name.
func nativeTransforms(s *plan.Stage, m *savepoint.Metadata, name func(id string) string) map[string]string {
	declared := map[string]bool{}
	for _, t := range m.Transforms {
		declared[t.UniqueName] = true
	}
	out := map[string]string{}
	for _, id := range s.Transforms {
		if n := name(id); declared[n] {
			out[n] = id
		}
	}
	return out
}

// nativeSides names the side inputs of stage s in the order its DB numbers
// them: reader's unique name / local name.
func nativeSides(s *plan.Stage, name func(id string) string) []string {
	var out []string
	for _, si := range s.SideInputs {
		out = append(out, name(si.Transform)+"/"+si.Local)
	}
	return out
}
