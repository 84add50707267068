package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/state"
)

// CheckpointOptions turn on periodic checkpoints of a job.
type CheckpointOptions struct {
	Storage storage.Storage
	// Job names the job in storage (<dir>/<Job>/...): a restarted job with
	// the same name finds its checkpoints.
	Job string
	// Interval between checkpoints (0: no periodic checkpoints; the
	// options still say where to restore from).
	Interval time.Duration
	// Timeout aborts a checkpoint that has not completed (default 10m).
	Timeout time.Duration
	// MinPause is the least time from the end of one checkpoint to the
	// start of the next.
	MinPause time.Duration
	// Retained is how many completed checkpoints are kept (default 1).
	Retained int
	// Restore is the checkpoint to start from (nil: a fresh start).
	Restore *checkpoint.Metadata
	// RestartAttempts is how often a failed job is restored from its latest
	// checkpoint and run again before it fails; RestartBackoff is the pause
	// before each restart.
	RestartAttempts int
	RestartBackoff  time.Duration
	// OnCheckpoint is told about every checkpoint that completes or fails,
	// OnRestart about every restart.
	OnCheckpoint func(CheckpointStats)
	OnRestart    func()
	// Fault, when set, is called at named points of the checkpoint
	// protocol; an error it returns fails that step (tests inject crashes
	// with it).
	Fault func(point string, chk int64) error
}

// CheckpointStats describe one checkpoint.
type CheckpointStats struct {
	ID        int64
	Started   time.Time
	Duration  time.Duration
	Alignment time.Duration // the longest alignment of any subtask
	Uploaded  int64         // bytes uploaded
	FullSize  int64         // bytes of all the files it references
	Subtasks  int
	Failed    string // why it was aborted; "" if it completed
}

// Fault points.
const (
	FaultBundle       = "bundle"        // a bundle ran; its state is not committed yet
	FaultSnapshot     = "snapshot"      // a subtask's synchronous snapshot
	FaultUpload       = "upload"        // a subtask's upload, after its files
	FaultBeforeCommit = "before-commit" // every subtask acknowledged
	FaultAfterCommit  = "after-commit"  // _metadata written, the bundles it covers finalized
)

// coordinator triggers checkpoints, collects the subtasks' parts and
// commits them. Subtasks call it from their goroutines; uploads run in
// goroutines it owns.
type coordinator struct {
	e   *Engine
	o   CheckpointOptions
	ctx context.Context

	mu       sync.Mutex
	subtasks map[checkpoint.SubtaskID]*subtaskCk
	pending  *pendingCk
	nextID   int64
	lastEnd  time.Time
	// lastStart: checkpoints start every Interval (start to start), at
	// least MinPause after the last one ended.
	lastStart time.Time
	base      *checkpoint.Metadata   // the last committed (or restored) checkpoint
	recent    []*checkpoint.Metadata // the last checkpoints committed, newest last: Retain need not read them back
	stats     []CheckpointStats
	// leftover are finalizations of subtasks that finished: they run with
	// the first completed checkpoint that records the subtask finished,
	// or when the job ends.
	leftover []leftoverFin
	wg       sync.WaitGroup // uploads, commits, discards
	sends    sync.WaitGroup // barriers on their way to a subtask's inbox
	// The stage graph: a subtask whose upstream subtasks have all finished
	// has only ended input left (in flight), so it can be triggered.
	upstream, downstream map[string][]string
	ofStage              map[string][]checkpoint.SubtaskID
}

type subtaskCk struct {
	in       inbox
	trig     chan int64
	kg       checkpoint.KeyGroupRange
	ended    bool // all inputs have ended: barriers come from the coordinator
	finished bool
	up       *checkpoint.Uploader
}

type pendingCk struct {
	id        int64
	started   time.Time
	acks      map[checkpoint.SubtaskID]checkpoint.SubtaskState
	snapped   map[checkpoint.SubtaskID]bool
	finalize  []finalization
	alignment time.Duration
	uploaded  int64
	// committing: the commit is under way; only its outcome ends the
	// checkpoint (a timeout must not discard files it is committing).
	committing bool
}

// finalization is a bundle whose finalization waits for a checkpoint.
type finalization struct {
	w    finalizer
	inst string
}

// finalizer is the harness that ran a bundle and holds its finalization
// callbacks (harness.Worker).
type finalizer interface {
	Finalize(ctx context.Context, instID string) error
}

// leftoverFin is a finalization of a finished subtask, due when
// checkpoint from or a later one commits.
type leftoverFin struct {
	finalization
	from int64
}

// leftoverFrom is the first checkpoint that holds the effects of the last
// bundles of subtask id, finishing now: the pending one if it has not
// taken the subtask's snapshot (it will record the subtask finished),
// else the next one to start (next is its ID).
func leftoverFrom(pending *pendingCk, id checkpoint.SubtaskID, next int64) int64 {
	if pending != nil && !pending.snapped[id] {
		return pending.id
	}
	return next
}

// dueLeftovers splits leftover into the finalizations checkpoint chk's
// commit makes due and those that wait for a later one.
func dueLeftovers(leftover []leftoverFin, chk int64) (due []finalization, kept []leftoverFin) {
	for _, l := range leftover {
		if l.from <= chk {
			due = append(due, l.finalization)
		} else {
			kept = append(kept, l)
		}
	}
	return due, kept
}

func newCoordinator(ctx context.Context, e *Engine, o CheckpointOptions, nextID int64) *coordinator {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Retained <= 0 {
		o.Retained = 1
	}
	return &coordinator{e: e, o: o, ctx: ctx, subtasks: map[checkpoint.SubtaskID]*subtaskCk{}, nextID: nextID, base: o.Restore, lastEnd: time.Now(),
		upstream: map[string][]string{}, downstream: map[string][]string{}, ofStage: map[string][]checkpoint.SubtaskID{}, lastStart: time.Now()}
}

func (c *coordinator) add(id checkpoint.SubtaskID, in inbox, trig chan int64, kg checkpoint.KeyGroupRange) error {
	up, err := checkpoint.NewUploader(c.o.Storage, c.o.Job, id, c.base)
	if err != nil {
		return err
	}
	c.subtasks[id] = &subtaskCk{in: in, trig: trig, kg: kg, up: up}
	c.ofStage[id.Stage] = append(c.ofStage[id.Stage], id)
	return nil
}

// upstreamFinished reports whether every subtask feeding stage has finished.
func (c *coordinator) upstreamFinished(stage string) bool {
	for _, up := range c.upstream[stage] {
		for _, id := range c.ofStage[up] {
			if !c.subtasks[id].finished {
				return false
			}
		}
	}
	return true
}

// loop triggers checkpoints every interval and aborts those that time out,
// until ctx ends; then it waits for the uploads it started.
func (c *coordinator) loop() {
	defer c.sends.Wait()
	defer c.wg.Wait()
	if c.o.Interval <= 0 {
		<-c.ctx.Done()
		return
	}
	tick := time.NewTicker(min(c.o.Interval, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
		c.mu.Lock()
		now := time.Now()
		switch {
		case c.pending != nil && !c.pending.committing && now.Sub(c.pending.started) > c.o.Timeout:
			c.abortLocked(c.pending.id, fmt.Errorf("timed out after %s", c.o.Timeout))
		case c.pending == nil && now.Sub(c.lastStart) >= c.o.Interval && now.Sub(c.lastEnd) >= c.o.MinPause:
			c.startLocked(now)
		}
		c.mu.Unlock()
	}
}

func (c *coordinator) startLocked(now time.Time) {
	live := 0
	for _, s := range c.subtasks {
		if !s.finished {
			live++
		}
	}
	if live == 0 {
		return // the job is ending
	}
	c.lastStart = now
	p := &pendingCk{id: c.nextID, started: now, acks: map[checkpoint.SubtaskID]checkpoint.SubtaskState{}, snapped: map[checkpoint.SubtaskID]bool{}}
	c.nextID++
	c.pending = p
	for id, s := range c.subtasks {
		switch {
		case s.finished:
			p.acks[id] = checkpoint.SubtaskState{SubtaskID: id, KeyGroups: s.kg, Finished: true}
		case s.ended:
			c.triggerLocked(s, p.id)
		}
	}
}

// triggerLocked sends barrier chk to a subtask whose inputs have ended: in
// band, and on its trigger channel, for tasks that can take it ahead of
// their queued input.
func (c *coordinator) triggerLocked(s *subtaskCk, chk int64) {
	select {
	case <-s.trig: // replace a stale request
	default:
	}
	s.trig <- chk // the coordinator (under c.mu) is the only sender
	c.sends.Add(1)
	go func() {
		defer c.sends.Done()
		_ = s.in.send(c.ctx, msg{kind: msgBarrier, chk: chk})
	}()
}

// ended: all inputs of subtask id have ended.
func (c *coordinator) ended(id checkpoint.SubtaskID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.subtasks[id]
	s.ended = true
	c.e.o.Logger.Debug("subtask inputs ended", "subtask", id.String())
	if p := c.pending; p != nil && !p.snapped[id] {
		c.triggerLocked(s, p.id)
	}
}

// finished: subtask id has ended its outputs and returned; fin are its
// bundles still waiting for finalization.
func (c *coordinator) finished(id checkpoint.SubtaskID, fin []finalization) {
	c.mu.Lock()
	s := c.subtasks[id]
	s.finished = true
	// A checkpoint that took this subtask's snapshot before it finished
	// does not hold the effects of its last bundles: their finalization
	// waits for the next checkpoint, which records the subtask finished.
	from := leftoverFrom(c.pending, id, c.nextID)
	for _, f := range fin {
		c.leftover = append(c.leftover, leftoverFin{finalization: f, from: from})
	}
	c.handOverMetricsLocked(id)
	for _, down := range c.downstream[id.Stage] {
		if !c.upstreamFinished(down) {
			continue
		}
		for _, d := range c.ofStage[down] {
			if ds := c.subtasks[d]; !ds.ended {
				ds.ended = true // its input is all in flight
				if p := c.pending; p != nil && !p.snapped[d] {
					c.triggerLocked(ds, p.id)
				}
			}
		}
	}
	p := c.pending
	if p == nil || p.snapped[id] {
		c.mu.Unlock()
		return
	}
	p.snapped[id] = true
	p.acks[id] = checkpoint.SubtaskState{SubtaskID: id, KeyGroups: s.kg, Finished: true}
	c.e.o.Logger.Debug("subtask finished during a checkpoint", "checkpoint", p.id, "subtask", id.String(), "after", time.Since(p.started))
	c.mu.Unlock()
	c.maybeCommit(p.id)
}

// aligned records how long a subtask waited to align barrier chk.
func (c *coordinator) aligned(chk int64, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pending; p != nil && p.id == chk {
		p.alignment = max(p.alignment, took)
	}
}

// snapshot takes a subtask's part of checkpoint chk: its engine state, and
// the Pebble checkpoint in dir ("" if it has no DB), which is uploaded in
// the background and removed. fin are the bundles to finalize once the
// checkpoint completes.
func (c *coordinator) snapshot(chk int64, id checkpoint.SubtaskID, blob []byte, dir string, fin []finalization) {
	c.mu.Lock()
	p := c.pending
	if p == nil || p.id != chk {
		// Aborted: nothing waits for the snapshot, but its bundles' effects
		// are in the subtask's state and so in the next checkpoint.
		c.rollForwardLocked(fin, chk)
		c.mu.Unlock()
		if dir != "" {
			os.RemoveAll(dir)
		}
		return
	}
	p.snapped[id] = true
	p.finalize = append(p.finalize, fin...)
	c.e.metrics.handOver(id, chk)
	c.e.o.Logger.Debug("subtask snapshot", "checkpoint", chk, "subtask", id.String(), "after", time.Since(p.started))
	s := c.subtasks[id]
	c.mu.Unlock()

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		st := checkpoint.SubtaskState{SubtaskID: id, KeyGroups: s.kg, SourcePosition: blob}
		var up int64
		if dir != "" {
			defer os.RemoveAll(dir)
			res, err := s.up.Upload(c.ctx, chk, dir)
			if err != nil {
				c.abort(chk, fmt.Errorf("subtask %s: %w", id, err))
				return
			}
			st.Files, up = res.Files, res.UploadedBytes
		}
		if err := c.fault(FaultUpload, chk); err != nil {
			c.e.fail(fmt.Errorf("checkpoint %d, subtask %s: %w", chk, id, err))
			return
		}
		c.mu.Lock()
		if c.pending == p {
			p.acks[id] = st
			p.uploaded += up
		}
		c.mu.Unlock()
		c.maybeCommit(chk)
	}()
}

func (c *coordinator) fault(point string, chk int64) error {
	if c.o.Fault == nil {
		return nil
	}
	return c.o.Fault(point, chk)
}

// maybeCommit commits checkpoint chk once every subtask has acknowledged.
func (c *coordinator) maybeCommit(chk int64) {
	c.mu.Lock()
	p := c.pending
	if p == nil || p.id != chk || p.committing || len(p.acks) < len(c.subtasks) {
		c.mu.Unlock()
		return
	}
	p.committing = true
	meta := &checkpoint.Metadata{
		JobID:          c.o.Job,
		CheckpointID:   chk,
		MaxParallelism: c.e.o.MaxParallelism,
		Created:        p.started.UTC(),
		TransformNames: c.e.transformNames(),
	}
	for _, st := range p.acks {
		meta.Subtasks = append(meta.Subtasks, st)
	}
	sort.Slice(meta.Subtasks, func(i, j int) bool {
		a, b := meta.Subtasks[i].SubtaskID, meta.Subtasks[j].SubtaskID
		return a.Stage < b.Stage || a.Stage == b.Stage && a.Subtask < b.Subtask
	})
	meta.Stats = &checkpoint.Stats{DurationMS: time.Since(p.started).Milliseconds(), AlignmentMS: p.alignment.Milliseconds(), UploadedBytes: p.uploaded}
	meta.Metrics = c.e.metrics.values(chk)
	c.mu.Unlock()

	// Only one commit runs: the last acknowledgement of chk calls this.
	if err := c.fault(FaultBeforeCommit, chk); err != nil {
		c.e.fail(fmt.Errorf("before committing checkpoint %d: %w", chk, err))
		return
	}
	if err := checkpoint.Commit(c.ctx, c.o.Storage, meta); err != nil {
		c.mu.Lock()
		p.committing = false
		c.mu.Unlock()
		c.abort(chk, err)
		return
	}
	c.mu.Lock()
	if c.pending == p {
		c.pending = nil
	}
	var due []finalization
	due, c.leftover = dueLeftovers(c.leftover, chk)
	fin := append(p.finalize, due...)
	c.lastEnd = time.Now()
	c.base = meta
	c.recent = append(c.recent, meta)
	if n := len(c.recent) - max(c.o.Retained, 1); n > 0 {
		c.recent = append([]*checkpoint.Metadata(nil), c.recent[n:]...)
	}
	recent := c.recent
	for _, s := range c.subtasks {
		s.up.Committed(meta)
	}
	full := meta.FullSize()
	stats := CheckpointStats{ID: chk, Started: p.started, Duration: c.lastEnd.Sub(p.started), Alignment: p.alignment, Uploaded: p.uploaded, FullSize: full, Subtasks: len(meta.Subtasks)}
	c.record(stats)
	c.mu.Unlock()
	c.e.o.Logger.Info("checkpoint completed", "checkpoint", chk, "took", stats.Duration, "uploaded", stats.Uploaded, "size", full)

	c.e.metrics.commitUpTo(chk)
	// The checkpoint covers these bundles: their effects are final now.
	// Their finalization callbacks live in the workers' memory, so they
	// run at once, before anything else can fail the run: a restart stops
	// the workers, and a restore from this checkpoint never replays these
	// bundles. Only a crash of the process in between loses them (Beam's
	// finalization is at most once).
	c.finalizeAll(c.ctx, fin)
	if err := c.fault(FaultAfterCommit, chk); err != nil {
		c.e.fail(fmt.Errorf("after checkpoint %d: %w", chk, err))
		return
	}
	if _, err := checkpoint.Retain(c.ctx, c.o.Storage, c.o.Job, c.o.Retained, recent...); err != nil {
		c.e.o.Logger.Warn("deleting old checkpoints failed", "err", err)
	}
}

// abort gives up checkpoint chk (if it is still pending) and deletes what
// it wrote; the job goes on.
func (c *coordinator) abort(chk int64, why error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pending; p != nil && p.id == chk && !p.committing {
		c.abortLocked(chk, why)
	}
}

func (c *coordinator) abortLocked(chk int64, why error) {
	p := c.pending
	c.pending = nil
	c.rollForwardLocked(p.finalize, chk)
	c.lastEnd = time.Now()
	c.record(CheckpointStats{ID: chk, Started: p.started, Duration: c.lastEnd.Sub(p.started), Alignment: p.alignment, Uploaded: p.uploaded, Failed: why.Error()})
	if errors.Is(why, context.Canceled) || c.ctx.Err() != nil {
		return
	}
	c.e.o.Logger.Warn("checkpoint aborted", "checkpoint", chk, "err", why)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := checkpoint.Discard(c.ctx, c.o.Storage, c.o.Job, chk); err != nil {
			c.e.o.Logger.Warn("cleaning up an aborted checkpoint failed", "checkpoint", chk, "err", err)
		}
	}()
}

// rollForwardLocked hands the finalizations of checkpoint chk, which will
// not complete, to the next checkpoint that does: every later checkpoint
// holds those bundles' effects (or the job's end does). c.mu is held.
func (c *coordinator) rollForwardLocked(fin []finalization, chk int64) {
	for _, f := range fin {
		c.leftover = append(c.leftover, leftoverFin{finalization: f, from: chk + 1})
	}
}

// record keeps stats (the last 100) and reports them; c.mu is held.
func (c *coordinator) record(s CheckpointStats) {
	c.stats = append(c.stats, s)
	if len(c.stats) > 100 {
		c.stats = c.stats[len(c.stats)-100:]
	}
	if c.o.OnCheckpoint != nil {
		c.o.OnCheckpoint(s)
	}
}

// setUpCheckpoints makes the coordinator of a run when checkpoints are on,
// after checking that restore (if any) fits this plan.
func (e *Engine) setUpCheckpoints(ctx context.Context, dir string, restore *checkpoint.Metadata) error {
	e.ck = nil
	o := e.o.Checkpoint
	if o == nil || o.Storage == nil {
		return nil
	}
	if why := e.uncheckpointable(); why != "" {
		if restore != nil {
			return fmt.Errorf("cannot restore checkpoint %d: %s", restore.CheckpointID, why)
		}
		e.o.Logger.Warn("checkpoints are off for this job", "why", why)
		return nil
	}
	if restore != nil {
		if err := e.fits(restore); err != nil {
			return &unfitError{err}
		}
	}
	next, err := checkpoint.NextID(ctx, o.Storage, o.Job)
	if err != nil {
		return err
	}
	co := *o
	co.Restore = restore
	e.ck = newCoordinator(ctx, e, co, next)
	for _, s := range e.plan.Stages {
		for _, pc := range s.Outputs {
			for _, cons := range e.plan.PColls[pc].Consumers {
				e.ck.downstream[s.ID] = append(e.ck.downstream[s.ID], cons.Stage.ID)
				e.ck.upstream[cons.Stage.ID] = append(e.ck.upstream[cons.Stage.ID], s.ID)
			}
		}
	}
	e.ckDir = filepath.Join(dir, "checkpoints")
	if err := os.MkdirAll(e.ckDir, 0o755); err != nil {
		return fmt.Errorf("creating the local checkpoint dir: %w", err)
	}
	return nil
}

// unfitError: the checkpoint to restore was not taken of this plan. A
// restart would find the same checkpoint, so the job fails at once.
type unfitError struct{ err error }

func (u *unfitError) Error() string { return u.err.Error() }
func (u *unfitError) Unwrap() error { return u.err }

// uncheckpointable says why this plan cannot be checkpointed yet ("" if it
// can).
func (e *Engine) uncheckpointable() string {
	for _, s := range e.plan.Stages {
		switch {
		case s.Kind == plan.KindTestStream:
			return fmt.Sprintf("stage %q is a TestStream", s.Name)
		}
	}
	return ""
}

// fits checks that checkpoint m was taken of this plan at this
// parallelism.
func (e *Engine) fits(m *checkpoint.Metadata) error {
	name := checkpoint.MetadataName(m.JobID, m.CheckpointID)
	if m.MaxParallelism != e.o.MaxParallelism {
		return fmt.Errorf("checkpoint %s has %d key groups, the job %d: restore a savepoint to change them", name, m.MaxParallelism, e.o.MaxParallelism)
	}
	want := map[checkpoint.SubtaskID]bool{}
	for _, s := range e.plan.Stages {
		for i := range e.parallelism(s) {
			id := checkpoint.SubtaskID{Stage: s.ID, Subtask: i}
			want[id] = true
			if m.Subtask(id) == nil {
				return fmt.Errorf("checkpoint %s has no state for subtask %s (stage %q): it was taken of another pipeline or at another parallelism", name, id, s.Name)
			}
		}
	}
	for _, s := range m.Subtasks {
		if !want[s.SubtaskID] {
			return fmt.Errorf("checkpoint %s has state for subtask %s, which this job does not have: it was taken of another pipeline or at another parallelism", name, s.SubtaskID)
		}
	}
	return nil
}

// register adds a subtask to the coordinator and returns the aligner that
// feeds its task loop.
func (c *coordinator) register(s *subtask, raw inbox) (*aligner, error) {
	id := s.ckID()
	start, end := state.KeyGroupRange(s.index, c.e.parallelism(s.stage), c.e.o.MaxParallelism)
	s.trig = make(chan int64, 1)
	if err := c.add(id, raw, s.trig, checkpoint.KeyGroupRange{Start: start, End: end}); err != nil {
		return nil, err
	}
	return newAligner(raw, s.ports, func() { c.ended(id) }, c.aligned), nil
}

// transformNames maps the plan's transform IDs to their unique names.
func (e *Engine) transformNames() map[string]string {
	names := map[string]string{}
	for id, t := range e.plan.Components.GetTransforms() {
		names[id] = t.GetUniqueName()
	}
	return names
}

// finalizeAll finalizes bundles whose effects are final.
func (c *coordinator) finalizeAll(ctx context.Context, fin []finalization) {
	for _, f := range fin {
		if err := f.w.Finalize(ctx, f.inst); err != nil {
			c.e.o.Logger.Warn("bundle finalization failed", "err", err)
		}
	}
}

// jobDone finalizes what finished subtasks and checkpoints that did not
// complete left when the whole job has ended: no restore can replay those
// bundles any more. If a commit under way failed the run as the job ended
// (a crash after it committed), it returns why: the job is not done, it
// restarts from that checkpoint and finalizes at its own end.
func (c *coordinator) jobDone(ctx context.Context) error {
	// Uploads and commits under way end first, while the run's context is
	// live: a commit racing the job's end would finalize with a cancelled
	// one and lose its finalizations. No subtask runs to start new ones.
	// (Barriers sent to subtasks that have finished wait in c.sends until
	// the run's context ends.)
	c.wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	var fin []finalization
	if p := c.pending; p != nil {
		fin = append(fin, p.finalize...)
		p.finalize = nil
	}
	for _, l := range c.leftover {
		fin = append(fin, l.finalization)
	}
	c.leftover = nil
	c.mu.Unlock()
	c.e.metrics.commitAll()
	c.finalizeAll(ctx, fin)
	return nil
}
