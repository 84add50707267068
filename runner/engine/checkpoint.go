package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/engine/coord"
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
	// Since is the first checkpoint ID of this run of the job (the run
	// record's First): a restart after a failure never restores an older
	// checkpoint, which an earlier run of the same job name left.
	Since int64
	// RestartAttempts is how often a failed job is restored from its latest
	// checkpoint and run again before it fails; RestartBackoff is the pause
	// before each restart.
	RestartAttempts int
	RestartBackoff  time.Duration
	// OnCheckpoint is told about every checkpoint that completes or fails,
	// OnRestart about every restart.
	OnCheckpoint func(CheckpointStats)
	OnRestart    func()
	// OnJobDone, when set, is called once the whole job has ended, before
	// the bundles no completed checkpoint covered are finalized: it
	// records durably that the job finished (the runner's run record), so
	// that a crash after those finalizations never replays their bundles
	// from an earlier checkpoint. If it fails (its storage refuses
	// writes), the job's results are complete all the same: it is logged
	// and the finalizations run.
	OnJobDone func(context.Context) error
	// Fault, when set, is called at named points of the checkpoint
	// protocol; an error it returns fails that step (tests inject crashes
	// with it).
	Fault func(point string, chk int64) error
}

// CheckpointStats describe one checkpoint.
type CheckpointStats = coord.Stats

// Fault points.
const (
	FaultBundle       = "bundle"        // a bundle ran; its state is not committed yet
	FaultSnapshot     = "snapshot"      // a subtask's synchronous snapshot
	FaultUpload       = "upload"        // a subtask's upload, after its files
	FaultBeforeCommit = "before-commit" // every subtask acknowledged
	FaultAfterCommit  = "after-commit"  // _metadata written, the bundles it covers finalized
	// FaultSavepointWrite: a savepoint's data files and pipeline are
	// written, its _metadata (which makes it a savepoint) is not.
	FaultSavepointWrite = "savepoint-write"
)

// coordinator is the shell around the checkpoint coordinator's decisions
// (coord.Coordinator): it feeds it what subtasks, uploads and commits
// report and the clock's ticks, under one lock, and carries out what it
// decides: barriers to subtasks, uploads and commits in goroutines it
// owns, finalization, retention and clean-up.
type coordinator struct {
	e   *Engine
	o   CheckpointOptions
	ctx context.Context

	mu       sync.Mutex
	node     *coord.Coordinator[finalization]
	subtasks map[checkpoint.SubtaskID]*subtaskCk
	wg       sync.WaitGroup // uploads, commits, discards
	sends    sync.WaitGroup // barriers on their way to a subtask's inbox
	// waiters hear how checkpoints they asked for ended (checkpointNow);
	// while pins > 0, completed checkpoints are kept (Retain waits).
	waiters map[int64][]chan ckOutcome
	pins    int
	// cancelRun ends the run with a cause (a stop with savepoint).
	cancelRun context.CancelCauseFunc
}

// ckOutcome is how a checkpoint someone waits for ended: committed (meta)
// or not (err).
type ckOutcome struct {
	meta *checkpoint.Metadata
	err  error
}

type subtaskCk struct {
	in   inbox
	trig chan int64
	up   *checkpoint.Uploader
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

func newCoordinator(ctx context.Context, e *Engine, o CheckpointOptions, nextID int64) *coordinator {
	node := coord.New[finalization](coord.Options{Interval: o.Interval, Timeout: o.Timeout, MinPause: o.MinPause, Retained: o.Retained}, nextID, e.now())
	return &coordinator{e: e, o: o, ctx: ctx, node: node, subtasks: map[checkpoint.SubtaskID]*subtaskCk{}, waiters: map[int64][]chan ckOutcome{}}
}

func (c *coordinator) add(id checkpoint.SubtaskID, in inbox, trig chan int64, kg checkpoint.KeyGroupRange) error {
	up, err := checkpoint.NewUploader(c.o.Storage, c.o.Job, id, c.o.Restore)
	if err != nil {
		return err
	}
	c.subtasks[id] = &subtaskCk{in: in, trig: trig, up: up}
	c.node.AddSubtask(id, kg)
	return nil
}

// step feeds the coordinator one event (decide, under c.mu) and carries
// out what it decides: barriers at once, under c.mu (a subtask's trigger
// channel has one sender), the rest after it is released.
func (c *coordinator) step(decide func(n *coord.Coordinator[finalization]) []coord.Action[finalization]) {
	c.mu.Lock()
	acts := decide(c.node)
	rest := acts[:0:0]
	for _, a := range acts {
		if a.Kind == coord.Trigger {
			c.triggerLocked(c.subtasks[a.Subtask], a.Chk)
		} else {
			rest = append(rest, a)
		}
	}
	c.mu.Unlock()
	c.do(rest)
}

// loop ticks the coordinator (checkpoints start, time out) until ctx ends;
// then it waits for the uploads and commits it started.
func (c *coordinator) loop() {
	defer c.sends.Wait()
	defer c.endWaits()
	defer c.wg.Wait()
	if c.o.Interval <= 0 {
		<-c.ctx.Done()
		return
	}
	tick := c.e.o.Clock.NewTicker(min(c.o.Interval, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-tick.Chan():
			c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] { return n.Tick(now) })
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
	c.e.o.Logger.Debug("subtask inputs ended", "subtask", id.String())
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] { return n.Ended(id) })
}

// finished: subtask id has ended its outputs and returned; fin are its
// bundles still waiting for finalization, and its metrics since its last
// snapshot go to the first checkpoint that records it finished.
func (c *coordinator) finished(id checkpoint.SubtaskID, fin []finalization) {
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		c.e.metrics.handOver(id, n.Holds(id))
		return n.Finished(id, fin)
	})
}

// aligned records how long a subtask waited to align barrier chk.
func (c *coordinator) aligned(chk int64, took time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.node.Aligned(chk, took)
}

// snapshot takes a subtask's part of checkpoint chk: its engine state, and
// the Pebble checkpoint in dir ("" if it has no DB), which is uploaded in
// the background and removed. fin are the bundles to finalize once the
// checkpoint completes.
func (c *coordinator) snapshot(chk int64, id checkpoint.SubtaskID, blob []byte, dir string, fin []finalization) {
	c.mu.Lock()
	wanted := c.node.Snapshot(chk, id, fin)
	if wanted {
		c.e.metrics.handOver(id, chk)
	}
	s := c.subtasks[id]
	c.mu.Unlock()
	if !wanted {
		// Aborted: nothing waits for the snapshot, but its bundles' effects
		// are in the subtask's state and so in the next checkpoint.
		if dir != "" {
			os.RemoveAll(dir)
		}
		return
	}
	c.e.o.Logger.Debug("subtask snapshot", "checkpoint", chk, "subtask", id.String())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		st := checkpoint.SubtaskState{SourcePosition: blob}
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
		c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] { return n.Acked(chk, id, st, up) })
	}()
}

func (c *coordinator) fault(point string, chk int64) error {
	if c.o.Fault == nil {
		return nil
	}
	return c.o.Fault(point, chk)
}

// do carries out the coordinator's actions other than barriers, in order.
func (c *coordinator) do(acts []coord.Action[finalization]) {
	for _, a := range acts {
		switch a.Kind {
		case coord.Commit:
			c.commit(a.Chk, a.Commit)
		case coord.Report:
			if a.Stats.Failed == "" {
				c.e.o.Logger.Info("checkpoint completed", "checkpoint", a.Chk, "took", a.Stats.Duration, "uploaded", a.Stats.Uploaded, "size", a.Stats.FullSize)
			} else {
				c.notify(a.Chk, ckOutcome{err: fmt.Errorf("checkpoint %d failed: %s", a.Chk, a.Stats.Failed)})
			}
			if c.o.OnCheckpoint != nil {
				c.o.OnCheckpoint(a.Stats)
			}
		case coord.Finalize:
			// The checkpoint covers these bundles: their effects are final
			// now. Their finalization callbacks live in the workers'
			// memory, so they run at once, before anything else can fail
			// the run: a restart stops the workers, and a restore from
			// this checkpoint never replays these bundles. Only a crash of
			// the process in between loses them (Beam's finalization is at
			// most once).
			c.e.metrics.commitUpTo(a.Chk)
			c.finalizeAll(c.ctx, a.Fins)
		case coord.Retain:
			if err := c.fault(FaultAfterCommit, a.Chk); err != nil {
				c.e.fail(fmt.Errorf("after checkpoint %d: %w", a.Chk, err))
				return
			}
			c.mu.Lock()
			pinned := c.pins > 0
			c.mu.Unlock()
			if pinned {
				continue // a savepoint reads a completed checkpoint: the next Retain catches up
			}
			if _, err := checkpoint.Retain(c.ctx, c.o.Storage, c.o.Job, c.o.Retained, a.Recent...); err != nil {
				c.e.o.Logger.Warn("deleting old checkpoints failed", "err", err)
			}
		case coord.Discard:
			if c.ctx.Err() != nil {
				continue
			}
			c.e.o.Logger.Warn("checkpoint aborted", "checkpoint", a.Chk, "err", a.Stats.Failed)
			chk := a.Chk
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				if err := checkpoint.Discard(c.ctx, c.o.Storage, c.o.Job, chk); err != nil {
					c.e.o.Logger.Warn("cleaning up an aborted checkpoint failed", "checkpoint", chk, "err", err)
				}
			}()
		}
	}
}

// commit writes checkpoint chk's metadata and tells the coordinator how
// it went. Only one commit runs: the last acknowledgement of chk asks for
// it.
func (c *coordinator) commit(chk int64, tc *coord.ToCommit) {
	meta := &checkpoint.Metadata{
		JobID:          c.o.Job,
		CheckpointID:   chk,
		MaxParallelism: c.e.o.MaxParallelism,
		Created:        tc.Started.UTC(),
		TransformNames: c.e.transformNames(),
		Subtasks:       tc.Subtasks,
		Stats:          &checkpoint.Stats{DurationMS: c.e.now().Sub(tc.Started).Milliseconds(), AlignmentMS: tc.Alignment.Milliseconds(), UploadedBytes: tc.Uploaded},
		Metrics:        c.e.metrics.values(chk),
	}
	if err := c.fault(FaultBeforeCommit, chk); err != nil {
		c.e.fail(fmt.Errorf("before committing checkpoint %d: %w", chk, err))
		return
	}
	if err := checkpoint.Commit(c.ctx, c.o.Storage, meta); err != nil {
		c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
			return n.CommitFailed(chk, err, c.e.now())
		})
		return
	}
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		for _, s := range c.subtasks {
			s.up.Committed(meta)
		}
		return n.Committed(meta, c.e.now())
	})
	c.notify(chk, ckOutcome{meta: meta})
}

// checkpointNow starts a checkpoint now, or joins the one under way, and
// waits until it has completed; the completed checkpoint's files are kept
// until release is called (Retain waits meanwhile).
func (c *coordinator) checkpointNow(ctx context.Context) (meta *checkpoint.Metadata, release func(), err error) {
	ch := make(chan ckOutcome, 1)
	var chk int64
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		acts := n.Start(c.e.now())
		if chk = n.Pending(); chk != 0 {
			c.waiters[chk] = append(c.waiters[chk], ch)
			c.pins++
		}
		return acts
	})
	if chk == 0 {
		return nil, nil, errors.New("the job is ending: no checkpoint can start")
	}
	release = func() {
		c.mu.Lock()
		c.pins--
		c.mu.Unlock()
	}
	select {
	case out := <-ch:
		if out.err != nil {
			release()
			return nil, nil, out.err
		}
		return out.meta, release, nil
	case <-ctx.Done():
		release()
		return nil, nil, fmt.Errorf("waiting for checkpoint %d: %w", chk, context.Cause(ctx))
	}
}

// notify tells those waiting for checkpoint chk how it ended.
func (c *coordinator) notify(chk int64, out ckOutcome) {
	c.mu.Lock()
	ws := c.waiters[chk]
	delete(c.waiters, chk)
	c.mu.Unlock()
	for _, w := range ws {
		w <- out // buffered: each waiter is told once
	}
}

// endWaits tells everyone still waiting that the run ended first.
func (c *coordinator) endWaits() {
	c.mu.Lock()
	var chks []int64
	for chk := range c.waiters {
		chks = append(chks, chk)
	}
	c.mu.Unlock()
	for _, chk := range chks {
		c.notify(chk, ckOutcome{err: fmt.Errorf("the run ended before checkpoint %d completed: %w", chk, context.Cause(c.ctx))})
	}
}

// abort gives up checkpoint chk (if it is still pending) and deletes what
// it wrote; the job goes on.
func (c *coordinator) abort(chk int64, why error) {
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		return n.Abort(chk, why, c.e.now())
	})
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
				e.ck.node.AddEdge(s.ID, cons.Stage.ID)
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
	c.e.finalize(ctx, fin...)
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
	if c.o.OnJobDone != nil {
		if err := c.o.OnJobDone(ctx); err != nil {
			c.e.o.Logger.Warn("the job's end could not be recorded before its last finalizations", "err", err)
		}
	}
	c.mu.Lock()
	fin := c.node.JobDone()
	c.mu.Unlock()
	c.e.metrics.commitAll()
	c.finalizeAll(ctx, fin)
	return nil
}
