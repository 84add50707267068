package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
	"golang.org/x/sync/errgroup"
)

// Options configure an execution.
type Options struct {
	Parallelism    int // subtasks per stage; 0 = number of CPUs
	MaxParallelism int // key groups; 0 = state.DefaultMaxParallelism
	TempDir        string
	Logger         *slog.Logger
	StartWorker    harness.Starter
	API            *pipepb.ApiServiceDescriptor // Fn API server for data and state
	// MaxAttempts bounds how often one bundle is tried (default 4).
	MaxAttempts int
	// OnMetrics receives the job's aggregated user metrics as they change:
	// attempted (every successful bundle attempt, replays included) and
	// committed (bundles whose effects are in a completed checkpoint or the
	// finished job). See metrics.go.
	OnMetrics func(attempted, committed []*pipepb.MonitoringInfo)
	// ProgressEvery is how often progress is logged (0: never).
	ProgressEvery time.Duration
	// Clock is processing time and every wait the engine times: when
	// processing-time timers fire, deferred residuals resume, checkpoints
	// start and time out, triggered panes fire (nil: the wall clock).
	Clock Clock
	// Checkpoint turns on checkpoints, restores and restarts (nil: off).
	Checkpoint *CheckpointOptions
	// FromSavepoint is the savepoint the job starts from (nil: none): a
	// run that restores no checkpoint of its own restores it.
	FromSavepoint *SavepointSource
	// Limits are the engine's internal bounds (zero fields: defaults).
	Limits Limits
}

// Clock tells processing time and times the engine's waits
// (clockwork.NewFakeClock in tests).
type Clock = clockwork.Clock

// now is the engine's processing time.
func (e *Engine) now() time.Time { return e.o.Clock.Now() }

// Engine runs one plan.
type Engine struct {
	plan    *plan.Plan
	o       Options
	pool    *pool
	metrics *metrics
	quiet   *quiescence // in a TestStream job
	cache   *state.Cache

	drainOnce sync.Once
	drain     chan struct{} // closed by Drain

	progress map[*plan.Stage]*stageProgress

	// Of the current run: the checkpoint coordinator (nil when not
	// checkpointing), where synchronous snapshots go, and how to fail the run.
	ck *coordinator
	// live is the coordinator of the run under way, for callers outside
	// it (Savepoint); nil between runs.
	live  atomic.Pointer[coordinator]
	ckDir string
	fail  func(error)
	// fromSP is the savepoint the job starts from, open; runSP is it while
	// the run under way restores it (no checkpoint of its own).
	fromSP, runSP *spRestore
	// stop is a stop with savepoint (stop.go); stopMu guards its drained
	// target and ended, set when Run returns.
	stop    stopState
	stopMu  sync.Mutex
	ended   bool
	running atomic.Bool
}

// Drain asks the job to finish: sources stop (splittable DoFns truncate
// their restrictions, TestStreams stop replaying), the watermark reaches
// the end, every timer fires, and Run returns nil.
func (e *Engine) Drain() {
	e.drainOnce.Do(func() { close(e.drain) })
}

// New prepares an execution of p.
func New(p *plan.Plan, o Options) *Engine {
	if o.Parallelism <= 0 {
		o.Parallelism = runtime.NumCPU()
	}
	if o.MaxParallelism <= 0 {
		o.MaxParallelism = state.DefaultMaxParallelism
	}
	if o.Parallelism > o.MaxParallelism {
		o.Parallelism = o.MaxParallelism
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 4
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Limits = o.Limits.withDefaults()
	e := &Engine{plan: p, o: o, metrics: newMetrics(o.OnMetrics), drain: make(chan struct{}), stop: stopState{done: make(chan stopOutcome, 1)}}
	e.pool = &pool{start: o.StartWorker, workers: map[string]harness.Worker{}, log: o.Logger}
	e.progress = newProgress(e)
	for _, s := range p.Stages {
		if s.Kind == plan.KindTestStream {
			e.quiet = newQuiescence()
		}
	}
	return e
}

func (e *Engine) parallelism(s *plan.Stage) int {
	if s.Kind == plan.KindImpulse || s.Kind == plan.KindTestStream {
		return 1
	}
	return e.o.Parallelism
}

type task interface {
	run(ctx context.Context) error
	id() string
	ckID() checkpoint.SubtaskID
}

// stateOwner is a task that opens a state DB when it is made and closes
// it when its run ends.
type stateOwner interface {
	stateDB() *state.DB
}

// closeUnrun closes the state DBs of tasks made for a run that fails
// before they run.
func closeUnrun(tasks ...task) {
	for _, t := range tasks {
		if o, ok := t.(stateOwner); ok && o.stateDB() != nil {
			o.stateDB().Close()
		}
	}
}

// Run executes the plan until every stage has ended, the context is
// cancelled, or a stage fails. With checkpoints on, a failed run is
// restored from the latest completed checkpoint and run again, as often as
// the restart strategy allows.
func (e *Engine) Run(ctx context.Context) (err error) {
	e.running.Store(true)
	defer func() {
		e.running.Store(false)
		err = e.endStop(ctx, err)
	}()
	if err := e.registerDescriptors(); err != nil {
		return err
	}
	if src := e.o.FromSavepoint; src != nil {
		r, err := e.openSavepoint(ctx, src)
		if err != nil {
			return fmt.Errorf("not started: %w", err)
		}
		e.fromSP = r
	}
	ck := e.o.Checkpoint
	var restore *checkpoint.Metadata
	if ck != nil {
		restore = ck.Restore
	}
	// Checkpoints a restore found damaged: later attempts pass over them
	// to an older retained one instead of failing on the same file again.
	bad := map[int64]error{}
	for attempt := 1; ; attempt++ {
		err := e.runOnce(ctx, restore)
		if errors.Is(err, errStopped) {
			return nil
		}
		var unfit *unfitError
		if err == nil || ctx.Err() != nil || ck == nil || attempt > ck.RestartAttempts || errors.As(err, &unfit) {
			return err
		}
		if restore != nil && checkpoint.Unusable(err) {
			bad[restore.CheckpointID] = err
		}
		e.o.Logger.Warn("job failed; restarting from its latest checkpoint", "attempt", attempt, "of", ck.RestartAttempts, "err", err)
		e.pool.stopAll()
		if ck.OnRestart != nil {
			ck.OnRestart()
		}
		select {
		case <-e.o.Clock.After(ck.RestartBackoff):
		case <-ctx.Done():
			return err
		}
		meta, skipped, lerr := checkpoint.LatestUsable(ctx, ck.Storage, ck.Job, bad)
		if skipped != nil {
			e.o.Logger.Warn("passing over unusable checkpoints", "err", skipped)
		}
		switch {
		case lerr == nil && meta.CheckpointID >= ck.Since:
			restore = meta
		case lerr == nil:
			e.o.Logger.Info("the latest checkpoint is of an earlier run of the job: restarting from the start", "checkpoint", meta.CheckpointID, "run_since", ck.Since)
			restore = nil
		case errors.Is(lerr, checkpoint.ErrNoCheckpoint):
			restore = nil // nothing completed yet: from the start
		default:
			return fmt.Errorf("restarting after %w: %w", err, lerr)
		}
	}
}

// runOnce runs the plan once, from checkpoint restore if it is not nil.
func (e *Engine) runOnce(ctx context.Context, restore *checkpoint.Metadata) (err error) {
	dir, err := os.MkdirTemp(e.o.TempDir, "weir-job-")
	if err != nil {
		return fmt.Errorf("creating job state dir: %w", err)
	}
	defer os.RemoveAll(dir)
	e.cache = state.NewCache(256 << 20)
	defer e.cache.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer e.pool.stopAll()
	e.fail = cancel

	if err := e.setUpCheckpoints(ctx, dir, restore); err != nil {
		return err
	}
	if e.ck != nil {
		e.ck.cancelRun = cancel
	}
	e.runSP = nil
	if restore == nil {
		e.runSP = e.fromSP
	}
	e.metrics.rewind(restore, e.ck != nil)

	inboxes := map[*plan.Stage][]inbox{}
	for _, s := range e.plan.Stages {
		n := e.parallelism(s)
		for i := 0; i < n; i++ {
			inboxes[s] = append(inboxes[s], make(inbox, e.o.Limits.InboxSize))
		}
	}
	var tasks []task
	var toMake []taskToMake
	var aligners []*aligner
	var gates map[inbox]*gate // alignment gates, with checkpoints on
	if e.ck != nil {
		gates = map[inbox]*gate{}
		for _, ins := range inboxes {
			for _, in := range ins {
				gates[in] = newGate()
			}
		}
	}
	started := false
	defer func() {
		if !started { // a task could not be made: the others never run
			closeUnrun(tasks...)
		}
	}()
	for _, s := range e.plan.Stages {
		ports := e.ports(s)
		var split *splitPool
		if s.Splittable != "" && e.ck == nil {
			// Sharing work between subtasks would move source positions
			// between snapshots; with checkpoints each keeps its own.
			split = newSplitPool(len(inboxes[s]))
			split.clock = e.o.Clock
		}
		for i := range inboxes[s] {
			r, err := e.router(s, i, inboxes)
			if err != nil {
				return err
			}
			r.gates = gates
			base := subtask{stage: s, index: i, in: inboxes[s][i], out: r, ports: ports(), e: e}
			if e.ck != nil {
				a, err := e.ck.register(&base, inboxes[s][i])
				if err != nil {
					return err
				}
				a.gate = gates[inboxes[s][i]]
				aligners = append(aligners, a)
				base.in = a.out
				if r := base.restored(); r != nil && r.Finished {
					tasks = append(tasks, &finishedTask{subtask: base})
					continue
				}
			}
			if e.runSP.firedImpulse(e, s) {
				tasks = append(tasks, &finishedTask{subtask: base})
				continue
			}
			toMake = append(toMake, taskToMake{at: len(tasks), base: base, dir: filepath.Join(dir, fmt.Sprintf("%s-%d", s.ID, i)), split: split})
			tasks = append(tasks, nil)
		}
	}
	if err := e.newTasks(ctx, tasks, toMake); err != nil {
		return err
	}
	var wg sync.WaitGroup
	if e.o.ProgressEvery > 0 {
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); e.reportProgress(pctx, e.o.ProgressEvery) }()
		defer func() { stop(); <-done }()
	}
	if e.ck != nil {
		cctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		e.ck.ctx = cctx
		go func() { defer close(done); e.ck.loop() }()
		e.live.Store(e.ck)
		defer func() { e.live.Store(nil); stop(); <-done }()
	}
	var mu sync.Mutex
	var first error
	started = true
	for i, t := range tasks {
		wg.Add(1)
		tctx, stop := context.WithCancel(ctx)
		if aligners != nil {
			wg.Add(1)
			go func() { defer wg.Done(); aligners[i].run(tctx, e.o.Clock) }()
		}
		go func() {
			defer wg.Done()
			defer stop()
			start := e.o.Clock.Now()
			defer func() {
				e.o.Logger.Debug("subtask finished", "subtask", t.id(), "took", e.o.Clock.Since(start))
			}()
			err := t.run(tctx)
			if r, ok := t.(interface{ release() }); ok {
				r.release()
			}
			if err == nil && e.ck != nil {
				var fin []finalization
				if f, ok := t.(interface{ leftFinalizations() []finalization }); ok {
					fin = f.leftFinalizations()
				}
				e.ck.finished(t.ckID(), fin)
			}
			if err != nil {
				mu.Lock()
				if first == nil && !errors.Is(err, context.Canceled) {
					first = err
				}
				mu.Unlock()
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if errors.Is(context.Cause(ctx), errStopped) {
		// Stopped with a savepoint: whatever the tasks said as they were
		// cancelled, the run ended as asked.
		return errStopped
	}
	if first != nil {
		return first
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	if e.ck != nil {
		return e.ck.jobDone(ctx)
	}
	return nil
}

// taskToMake is a task newTasks makes: newTask's arguments, and its
// place in the run's tasks.
type taskToMake struct {
	at    int
	base  subtask
	dir   string
	split *splitPool
}

// newTasks makes the tasks of toMake into their places in tasks, up to
// Limits.RestoreWorkers at once: a stateful task restores its state as it
// is made (its checkpoint's files copied, or its key groups of a savepoint
// imported), each on its own. On an error the tasks made stay in tasks,
// to be closed by the caller.
func (e *Engine) newTasks(ctx context.Context, tasks []task, toMake []taskToMake) error {
	// No task keeps the context it is made with: the first error stops the
	// others' restores.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(e.o.Limits.RestoreWorkers)
	start := e.o.Clock.Now()
	for _, m := range toMake {
		g.Go(func() error {
			t, err := e.newTask(gctx, m.base, m.dir, m.split)
			tasks[m.at] = t
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if e.runSP != nil || (e.ck != nil && e.ck.o.Restore != nil) {
		e.o.Logger.Info("state restored", "subtasks", len(toMake), "from_savepoint", e.runSP != nil, "took", e.o.Clock.Since(start))
	}
	return nil
}

// newTask makes the task that runs subtask base; stateful ones keep their
// state under dir.
func (e *Engine) newTask(ctx context.Context, base subtask, dir string, split *splitPool) (task, error) {
	var t interface {
		task
		restore(*taskState) error
	}
	switch base.stage.Kind {
	case plan.KindImpulse:
		return &impulseTask{subtask: base}, nil
	case plan.KindTestStream:
		return &testStreamTask{subtask: base}, nil
	case plan.KindSDK:
		st, err := newSDKTask(ctx, base, dir, e.cache, split)
		if err != nil {
			return nil, err
		}
		t = st
	case plan.KindGBK:
		g, err := newGBKTask(ctx, base, dir, e.cache)
		if err != nil {
			return nil, err
		}
		if !triggered(base.stage) {
			t = g
			break
		}
		tt, err := newTriggeredGBK(g)
		if err != nil {
			g.db.Close()
			return nil, err
		}
		t = tt
	default:
		return nil, fmt.Errorf("stage %s: unknown kind %v", base.stage.ID, base.stage.Kind)
	}
	if r := base.restored(); r != nil {
		st, err := decodeTaskState(r.SourcePosition)
		if err == nil {
			err = t.restore(st)
		}
		if err != nil {
			closeUnrun(t)
			return nil, fmt.Errorf("%s: checkpoint %d: %w", base.name(), e.ck.o.Restore.CheckpointID, err)
		}
	} else if e.runSP != nil && base.stage.Splittable != "" {
		pending, err := e.runSP.residuals(ctx, &base)
		if err == nil && len(pending) > 0 {
			err = t.restore(&taskState{Pending: pending, InWM: wire.MinTimestamp})
		}
		if err != nil {
			closeUnrun(t)
			return nil, fmt.Errorf("%s: savepoint: %w", base.name(), err)
		}
	}
	return t, nil
}

func (e *Engine) registerDescriptors() error {
	for _, s := range e.plan.Stages {
		if s.Kind != plan.KindSDK {
			continue
		}
		d, err := e.plan.Descriptor(s, e.o.API)
		if err != nil {
			return err
		}
		e.pool.addDescriptor(s.EnvID, d)
		if s.Splittable != "" {
			dd, err := e.plan.DrainDescriptor(s, e.o.API)
			if err != nil {
				return err
			}
			e.pool.addDescriptor(s.EnvID, dd)
		}
	}
	return nil
}

// ports returns a constructor for a stage's input port states: how many
// senders feed each port. A stage that reaches a port several times (a
// PCollection flattened twice, two of its outputs flattened) is one
// sender of each of its subtasks: its control events reach the port once
// (router.broadcast).
func (e *Engine) ports(s *plan.Stage) func() []portState {
	counts := make([]int, 1+len(s.SideInputs))
	for _, up := range e.plan.Stages {
		seen := map[int]bool{}
		for _, pc := range up.Outputs {
			for _, c := range e.plan.PColls[pc].Consumers {
				if c.Stage == s && !seen[c.Port] {
					seen[c.Port] = true
					counts[c.Port] += e.parallelism(up)
				}
			}
		}
	}
	return func() []portState {
		ps := make([]portState, len(counts))
		for i, n := range counts {
			ps[i].senders = n
		}
		return ps
	}
}

func (e *Engine) router(s *plan.Stage, i int, inboxes map[*plan.Stage][]inbox) (*router, error) {
	r := &router{sender: fmt.Sprintf("%s/%d", s.ID, i), subtask: i, maxP: e.o.MaxParallelism, msgBytes: e.o.Limits.MessageBytes, outs: map[string]*output{}, quiet: e.quiet}
	r.onWatermark = func(wm int64) { e.setWatermark(s, i, wm) }
	for _, pc := range s.Outputs {
		p := e.plan.PColls[pc]
		c, err := wire.Build(e.plan.Components.GetCoders(), p.WireCoder)
		if err != nil {
			return nil, fmt.Errorf("stage %s output %s: %w", s.ID, pc, err)
		}
		wv, err := wire.NewWV(c)
		if err != nil {
			return nil, fmt.Errorf("stage %s output %s: %w", s.ID, pc, err)
		}
		o := &output{pcoll: pc, wv: wv, rr: i}
		for _, cons := range p.Consumers {
			o.targets = append(o.targets, target{port: cons.Port, part: cons.Partition, inboxes: inboxes[cons.Stage]})
		}
		r.outs[pc] = o
		r.order = append(r.order, o)
	}
	return r, nil
}

// triggered reports whether a GroupByKey needs the trigger state machine:
// any trigger but Default and Always (which the plain GroupByKey runs).
func triggered(s *plan.Stage) bool {
	switch s.WindowingStrategy.GetTrigger().GetTrigger().(type) {
	case nil, *pipepb.Trigger_Default_, *pipepb.Trigger_Always_:
		return false
	}
	return true
}

// subtask is what every kind of subtask shares.
type subtask struct {
	stage *plan.Stage
	index int
	in    inbox
	// With checkpoints on: the coordinator's requests to snapshot once all
	// inputs have ended (tasks that read it let them overtake queued
	// input), and the last checkpoint snapshotted.
	trig    chan int64
	snapped int64
	out     *router
	ports   []portState
	e       *Engine
	held    int64 // messages taken and not yet handled (quiescence)
}

// runSteps is the goroutine shell of a subtask: while more says there is
// work left, it waits for the next event and steps with it; then it
// finishes. The decisions are all in step and finish, which tests drive
// without the shell.
func runSteps[E any](ctx context.Context, more func() bool, next func(context.Context) (E, error), step func(context.Context, E) error, finish func(context.Context) error) error {
	for more() {
		ev, err := next(ctx)
		if err != nil {
			return err
		}
		if err := step(ctx, ev); err != nil {
			return err
		}
	}
	return finish(ctx)
}

func (s *subtask) id() string { return s.name() }

func (s *subtask) name() string { return fmt.Sprintf("%s[%d] %q", s.stage.ID, s.index, s.stage.Name) }

// recv waits for the next message.
func (s *subtask) recv(ctx context.Context) (msg, error) {
	s.release() // the previous message has been handled
	select {
	case m := <-s.in:
		s.took(m)
		return m, nil
	case <-ctx.Done():
		return msg{}, context.Cause(ctx)
	}
}

func (s *subtask) allDone() bool {
	for i := range s.ports {
		if !s.ports[i].done() {
			return false
		}
	}
	return true
}

// impulseTask emits Impulse's one element: empty bytes in the global window.
type impulseTask struct{ subtask }

func (t *impulseTask) run(ctx context.Context) error {
	value := wire.AppendVarint(nil, 0) // an empty byte array
	elem := wire.AppendWindowedValue(nil, wire.MinTimestamp, [][]byte{wire.GlobalWindow()}, wire.PaneNoFiring, value)
	for _, pc := range t.stage.Outputs {
		if err := t.out.emit(ctx, pc, elem); err != nil {
			return err
		}
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
}
