package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// sdkTask runs a fused stage's bundles on a harness worker.
type sdkTask struct {
	subtask
	side         *sideState
	sides        []*sideInput
	outputs      []string // sink transform IDs
	sinkTo       map[string]string
	pending      [][]byte // chunks of whole elements
	pendingBytes int
	keyed        *keyed     // nil unless the stage is stateful
	split        *splitPool // shared by the subtasks of a splittable stage
	inWV         wire.WVCoder
	// inWM is the input watermark the subtask has acted on; outWM the
	// output watermark it has sent.
	inWM, outWM int64
	// expired counts input elements dropped because their window had expired.
	expired int64
	// timersSet: a bundle set timers since event-time timers last fired; one
	// set at or before the input watermark fires without waiting for it to move.
	timersSet bool
	// draining: bundles run the drain descriptor (truncated restrictions).
	draining bool
	// delayed are residuals the SDK asked to resume later (or now).
	delayed []residual
	// checkpointed are residuals of checkpoint splits of the bundle's
	// attempts.
	checkpointed [][]byte
	// finalize are bundles to finalize when the next checkpoint completes.
	finalize []finalization
	// sideDB holds side inputs and parked input (the keyed DB if stateful);
	// park tracks main input waiting for side inputs (side_ready.go).
	sideDB *state.DB
	park   parker
}

func newSDKTask(ctx context.Context, base subtask, dir string, cache *state.Cache, split *splitPool) (*sdkTask, error) {
	t := &sdkTask{subtask: base, side: &sideState{inputs: map[[2]string]*sideInput{}}, sinkTo: map[string]string{}, split: split,
		inWM: wire.MinTimestamp, outWM: wire.MinTimestamp}
	p := base.e.plan
	in, err := wire.Build(p.Components.GetCoders(), p.PColls[base.stage.Input].WireCoder)
	if err != nil {
		return nil, fmt.Errorf("input of stage %s: %w", base.stage.ID, err)
	}
	if t.inWV, err = wire.NewWV(in); err != nil {
		return nil, fmt.Errorf("input of stage %s: %w", base.stage.ID, err)
	}
	for pc, sink := range base.stage.SinkIDs {
		t.outputs = append(t.outputs, sink)
		t.sinkTo[sink] = pc
	}
	if base.stage.Stateful {
		db, err := base.openState(ctx, dir, cache)
		if err != nil {
			return nil, fmt.Errorf("stage %q: opening state: %w", base.stage.Name, err)
		}
		maxP := base.e.o.MaxParallelism
		start, end := state.KeyGroupRange(base.index, base.e.parallelism(base.stage), maxP)
		if t.keyed, err = newKeyed(db, base.stage, p.Components, start, end, maxP); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := t.initSides(ctx, dir, cache); err != nil {
		if t.keyed != nil {
			t.keyed.db.Close()
		}
		return nil, err
	}
	return t, nil
}

// sdkEvent is one thing that happens to an SDK subtask: a message of its
// inbox, the job's drain, the coordinator asking for a checkpoint once
// every input has ended (chk), or, with none of them set, a wake-up: a
// deferred residual or processing-time timers may be due, or pending input
// can run.
type sdkEvent struct {
	m     *msg
	drain bool
	chk   int64
}

// run is the subtask's goroutine: it waits for the next event and steps,
// until its inputs have ended and nothing is left to run; then it finishes.
func (t *sdkTask) run(ctx context.Context) error {
	if db := t.stateDB(); db != nil {
		defer db.Close()
	}
	return runSteps(ctx, t.busy, t.next, t.step, t.finish)
}

// busy says the subtask has more to do than finishing: an input has not
// ended, or input, deferred residuals or parked input are left.
func (t *sdkTask) busy() bool {
	return !t.allDone() || len(t.pending) > 0 || len(t.delayed) > 0 || t.park.any
}

// next waits for the next event. A checkpoint the coordinator asks for
// comes before anything else. Stepwise, input is read no faster than
// bundles run it: what is not pending stays in the bounded inbox, so
// backpressure holds and a barrier finds at most one bundle's worth of
// input before it. Runnable input (pending stepwise, or parked input to
// release) does not wait for the inbox.
func (t *sdkTask) next(ctx context.Context) (sdkEvent, error) {
	var wake <-chan time.Time
	if d, ok := t.nextWake(); ok {
		timer := t.e.o.Clock.NewTimer(d)
		defer timer.Stop()
		wake = timer.Chan()
	}
	t.release() // what the last step took in has been handled
	if (t.stepwise() && len(t.pending) > 0) || t.park.more {
		wake = closedCh
	}
	select {
	case chk := <-t.trig:
		return sdkEvent{chk: chk}, nil
	default:
	}
	inbox := t.in
	if t.stepwise() && t.pendingBytes >= t.bundleBytes() && t.stage.Splittable == "" {
		inbox = nil
	}
	select {
	case m := <-inbox:
		t.took(m)
		return sdkEvent{m: &m}, nil
	case <-wake:
		return sdkEvent{}, nil
	case <-t.drainCh():
		return sdkEvent{drain: true}, nil
	case chk := <-t.trig:
		return sdkEvent{chk: chk}, nil
	case <-ctx.Done():
		return sdkEvent{}, context.Cause(ctx)
	}
}

// step takes one event, then does what it made due: residuals whose delay
// passed join the pending input, parked input whose side inputs are ready
// is released, pending input runs (as one bundle when stepwise, so
// barriers get in between), event-time timers fire when the input
// watermark moved (or a bundle set one already due) and expired state
// goes, processing-time timers fire, and the output watermark (the input
// watermark held by deferred residuals and timer holds) is sent when it
// moves.
func (t *sdkTask) step(ctx context.Context, ev sdkEvent) error {
	got := ev.m != nil
	switch {
	case got:
		switch m := *ev.m; m.kind {
		case msgBarrier:
			if err := t.barrier(ctx, m.chk); err != nil {
				return err
			}
		case msgData:
			if err := t.takeData(m); err != nil {
				return err
			}
		default:
			t.ports[m.port].observe(m)
		}
	case ev.drain:
		t.startDrain()
	case ev.chk > 0:
		if err := t.overtake(ctx, ev.chk); err != nil {
			return err
		}
	}
	t.readyDelayed(t.e.now())
	if err := t.releaseParked(); err != nil {
		return err
	}
	// Parked input holds the main input watermark.
	in := t.mainWatermark()
	advanced := in > t.inWM
	if !advanced {
		in = t.inWM
	}
	if len(t.pending) > 0 && (advanced || !got || t.pendingBytes >= t.bundleBytes() || len(t.in) == 0 || t.ports[0].done()) {
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
	// Input that arrived before the watermark moved has been run: what
	// comes next is judged against the new watermark.
	t.inWM = in
	if (advanced || t.timersSet) && in > wire.MinTimestamp && in < wire.MaxTimestamp {
		t.timersSet = false
		if err := t.fireTimersIn(ctx, eventTime, in); err != nil {
			return err
		}
		if err := t.expireState(in); err != nil {
			return err
		}
	}
	if err := t.fireTimersIn(ctx, processingTime, t.e.now().UnixMilli()); err != nil {
		return err
	}
	hold, err := t.timerHold()
	if err != nil {
		return err
	}
	if wm := min(in, t.hold(), hold); wm > t.outWM && wm < wire.MaxTimestamp {
		t.outWM = wm
		if err := t.out.control(ctx, msgWatermark, wm); err != nil {
			return err
		}
	}
	return nil
}

// finish runs what is left once every input has ended: pending input, the
// split pool's work (a splittable stage), every timer still set; then it
// ends the subtask's output.
func (t *sdkTask) finish(ctx context.Context) error {
	if err := t.flush(ctx); err != nil {
		return err
	}
	if t.split != nil {
		if err := t.drainSplits(ctx, t.outWM); err != nil {
			return err
		}
	}
	if err := t.fireTimers(ctx, wire.MaxTimestamp); err != nil {
		return err
	}
	if t.expired > 0 {
		t.e.o.Logger.Info("dropped input for expired windows", "stage", t.name(), "elements", t.expired)
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
}

// flush runs the pending input as bundles until nothing is pending
// (residuals of splittable DoFns come back as pending input).
func (t *sdkTask) flush(ctx context.Context) error {
	for len(t.pending) > 0 {
		if t.drainCh() != nil {
			select {
			case <-t.e.drain:
				t.startDrain()
			default:
			}
		}
		input := t.takeBundle()
		var err error
		if input, err = t.dropExpired(input); err != nil {
			return err
		}
		if len(input) == 0 {
			continue
		}
		if err := t.bundle(ctx, input, nil); err != nil {
			return err
		}
		if t.stepwise() {
			return nil // the rest waits for the loop, so barriers get in
		}
	}
	return nil
}

// flushAll runs all pending input, one bundle after another.
func (t *sdkTask) flushAll(ctx context.Context) error {
	for len(t.pending) > 0 {
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// takeBundle takes the input of the next bundle from pending: whole
// chunks up to a bundle's size, a chunk bigger than that cut at an element
// boundary. Bundles stay small however large the messages that brought the
// input: the harness holds a bundle's timers and the state batch holds its
// writes until it ends.
func (t *sdkTask) takeBundle() [][]byte {
	n, size := len(t.pending), 0
	if first := t.pending[0]; len(first) > t.bundleBytes() {
		// Pending chunks are whole elements the task decoded on the way
		// in: a decoding error here cannot happen, and leaves the chunk whole.
		if head, rest, err := t.inWV.Cut(first, t.bundleBytes()); err == nil && len(rest) > 0 {
			t.pending = append([][]byte{head, rest}, t.pending[1:]...)
		}
	}
	for n = 0; n < len(t.pending) && (n == 0 || size+len(t.pending[n]) <= t.bundleBytes()); n++ {
		size += len(t.pending[n])
	}
	input := t.pending[:n:n]
	t.pending = t.pending[n:]
	t.pendingBytes = 0
	for _, c := range t.pending {
		t.pendingBytes += len(c)
	}
	if len(t.pending) == 0 {
		t.pending = nil
	}
	return input
}

// addPending appends chunks of whole elements to the pending input.
func (t *sdkTask) addPending(chunks ...[]byte) {
	for _, c := range chunks {
		t.pending = append(t.pending, c)
		t.pendingBytes += len(c)
	}
}

// takeData takes in a data message: main input joins the pending input
// (or is parked until its side input windows are ready), side input its
// side input.
func (t *sdkTask) takeData(m msg) error {
	if m.port == 0 {
		return t.admit(m.data)
	}
	if err := t.sides[m.port-1].add(m.data); err != nil {
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	return nil
}

// stepwise says that flush runs one bundle at a time: with checkpoints on,
// the run loop must look for barriers between bundles (and a splittable
// stage's residuals come back as pending input for as long as it runs).
func (t *sdkTask) stepwise() bool { return t.e.ck != nil }

var closedCh = func() chan time.Time { c := make(chan time.Time); close(c); return c }()

// barrier takes the subtask's part of checkpoint chk: input that arrived
// before the barrier is run first (a splittable stage keeps it as its
// position instead; input waiting for side inputs stays parked in Pebble),
// then Pebble and the in-memory state are snapshotted and the barrier
// forwarded.
func (t *sdkTask) barrier(ctx context.Context, chk int64) error {
	if chk <= t.snapped {
		return nil // taken already, ahead of its in-band barrier
	}
	if t.stage.Splittable == "" {
		if err := t.flushAll(ctx); err != nil {
			return err
		}
	}
	return t.snapshotNow(ctx, chk)
}

// overtake takes the subtask's part of checkpoint chk when the coordinator
// asks, all its inputs having ended: what is still queued for it is read
// into its pending input without running it, and the snapshot keeps it.
// The barrier need not wait behind a backlog. If barrier chk itself comes
// out of the queue first (the aligner completed it: a sender that had sent
// it ended afterwards), what follows it is after the checkpoint: the
// snapshot is taken there.
func (t *sdkTask) overtake(ctx context.Context, chk int64) error {
	if chk <= t.snapped {
		return nil
	}
	for !t.allDone() {
		m, err := t.recv(ctx)
		if err != nil {
			return err
		}
		switch m.kind {
		case msgData:
			if err := t.takeData(m); err != nil {
				return err
			}
		case msgBarrier:
			if m.chk >= chk {
				return t.snapshotNow(ctx, m.chk)
			} // older: an aborted checkpoint's
		default:
			t.ports[m.port].observe(m)
		}
	}
	return t.snapshotNow(ctx, chk)
}

// snapshotNow snapshots the subtask as it is: Pebble (keyed state, side
// inputs, parked input), pending input, deferred residuals.
func (t *sdkTask) snapshotNow(ctx context.Context, chk int64) error {
	st := &taskState{Pending: t.pending, Delayed: delayedStates(t.delayed, t.e.now()), InWM: t.inWM, Dropped: t.expired}
	fin := t.finalize
	t.finalize = nil
	return t.snapshot(ctx, chk, t.stateDB(), st, fin)
}

// leftFinalizations are the bundles still waiting for a checkpoint when
// the subtask ends.
func (t *sdkTask) leftFinalizations() []finalization { return t.finalize }

// restore takes back the in-memory state of a checkpoint.
func (t *sdkTask) restore(st *taskState) error {
	now := t.e.now()
	t.addPending(st.Pending...)
	if st.PendingFile != "" {
		db := t.stateDB()
		if db == nil {
			return fmt.Errorf("%s: the checkpoint has a pending input file, the stage no state", t.name())
		}
		chunks, err := readPending(db.Dir(), st.PendingFile)
		if err != nil {
			return fmt.Errorf("%s: restoring pending input: %w", t.name(), err)
		}
		t.addPending(chunks...)
	}
	for _, d := range st.Delayed {
		t.delayed = append(t.delayed, residual{data: d.Data, wm: d.WM, readyAt: now.Add(time.Duration(d.DelayMS) * time.Millisecond)})
	}
	for i, chunks := range st.Sides {
		if i >= len(t.sides) {
			break
		}
		for _, c := range chunks {
			if err := t.sides[i].add(c); err != nil {
				return fmt.Errorf("%s: restoring side input %s: %w", t.name(), t.sides[i].spec.Local, err)
			}
		}
	}
	t.expired = st.Dropped
	return nil
}

// bundleBytes is how much input makes a full bundle.
func (t *sdkTask) bundleBytes() int {
	if t.keyed != nil {
		return t.e.o.Limits.StatefulBundleBytes
	}
	return t.e.o.Limits.BundleBytes
}

// drainSplits runs work split off siblings' bundles until the whole
// stage is done. sent is the output watermark the subtask has sent so far.
//
// All its inputs have ended, so what it may still output comes from its
// deferred residuals and from work it takes from the pool; the pool bounds
// the timestamps of the latter (see splitPool.boundLocked). While it waits
// (idle, or for a deferred residual to be due) it advances its output
// watermark to the least of those, so that its consumers, which take the
// minimum over their senders, move on with its busy siblings instead of
// waiting for the end of the stage.
func (t *sdkTask) drainSplits(ctx context.Context, sent int64) error {
	p := t.split
	p.watchSent(t.sentWatermark)
	// forward sends the output watermark bound allows, if it is higher
	// than what was sent, and below the maximum until the stage ends.
	forward := func(bound int64) error {
		th, err := t.timerHold()
		if err != nil {
			return err
		}
		if wm := min(bound, t.hold(), th, wire.MaxTimestamp-1); wm > sent {
			sent = wm
			return t.out.control(ctx, msgWatermark, wm)
		}
		return nil
	}
	for {
		// Deferred residuals are this subtask's own work: finish them first.
		for len(t.delayed) > 0 {
			p.holding(t.index, t.hold())
			bound, wake, poll := p.watch(t.index)
			if err := forward(bound); err != nil {
				return err
			}
			if err := t.waitDelayed(ctx, wake, poll); err != nil {
				return err
			}
			t.readyDelayed(t.e.now())
			if err := t.flush(ctx); err != nil {
				return err
			}
		}
		c, ok, err := p.takeFor(ctx, t.index, forward)
		if err != nil || !ok {
			return err
		}
		t.pending, t.pendingBytes = [][]byte{c}, len(c)
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
}

// waitDelayed waits until the next deferred residual is due, the split
// pool changes (wake), wmCheck passes (if poll), or the job is drained.
func (t *sdkTask) waitDelayed(ctx context.Context, wake <-chan struct{}, poll bool) error {
	d, ok := t.nextWake()
	if ok && d <= 0 {
		return nil
	}
	var due, tick <-chan time.Time
	if ok {
		timer := t.e.o.Clock.NewTimer(d)
		defer timer.Stop()
		due = timer.Chan()
	}
	if poll {
		timer := t.e.o.Clock.NewTimer(wmCheck)
		defer timer.Stop()
		tick = timer.Chan()
	}
	select {
	case <-due:
	case <-wake:
	case <-tick:
	case <-t.drainCh():
		t.startDrain()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// sentWatermark is the output watermark subtask i of the stage last sent.
func (t *sdkTask) sentWatermark(i int) int64 {
	return t.e.progress[t.stage].wms[i].Load()
}

// Beam's time domains.
const (
	anyDomain      = -1
	eventTime      = 1
	processingTime = 2
)

// fireTimers fires, bundle by bundle, every timer of any domain due at or
// before upTo, including timers that firing sets.
func (t *sdkTask) fireTimers(ctx context.Context, upTo int64) error {
	return t.fireTimersIn(ctx, anyDomain, upTo)
}

// fireTimersIn fires the timers of one domain (or anyDomain) due at or
// before upTo, including timers that firing sets.
func (t *sdkTask) fireTimersIn(ctx context.Context, domain int, upTo int64) error {
	if t.keyed == nil || len(t.keyed.families) == 0 {
		return nil
	}
	if domain == processingTime && !t.keyed.hasDomain(processingTime) {
		return nil
	}
	for {
		peek := t.keyed.db.NewBundle()
		var due []state.Timer
		var err error
		if domain == anyDomain {
			due, err = peek.DueTimers(t.keyed.kgStart, t.keyed.kgEnd, upTo, t.e.o.Limits.TimersPerFiring)
		} else {
			due, err = peek.DueTimersIn(domain, t.keyed.kgStart, t.keyed.kgEnd, upTo, t.e.o.Limits.TimersPerFiring)
		}
		peek.Discard()
		if err != nil {
			return fmt.Errorf("%s: reading due timers: %w", t.name(), err)
		}
		if len(due) == 0 {
			return nil
		}
		if err := t.bundle(ctx, nil, t.keyed.firable(due)); err != nil {
			return err
		}
	}
}

// dropExpired removes, for a stateful stage, input elements whose windows
// have all expired: their state is gone, so Beam drops them as too late.
func (t *sdkTask) dropExpired(input [][]byte) ([][]byte, error) {
	k := t.keyed
	if k == nil || k.window == nil || k.window.URN == wire.URNGlobalWindow || t.inWM <= wire.MinTimestamp || t.inWM >= wire.MaxTimestamp {
		return input, nil
	}
	out := input[:0]
	for _, c := range input {
		var kept []byte
		dropped := false
		err := t.inWV.ForEach(c, func(e wire.Element) error {
			for _, w := range e.Windows {
				if at, ok := k.expiry(w); !ok || at >= t.inWM {
					kept = append(kept, e.Raw...)
					return nil
				}
			}
			dropped = true
			t.expired++
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: reading input: %w", t.name(), err)
		}
		if !dropped {
			out = append(out, c)
		} else if len(kept) > 0 {
			out = append(out, kept)
		}
	}
	return out, nil
}

// expireState clears the state of every window that expired by wm (after
// its timers have fired).
func (t *sdkTask) expireState(wm int64) error {
	if t.keyed == nil {
		return nil
	}
	for {
		b := t.keyed.db.NewBundle()
		due, err := b.DueTimersIn(gcDomain, t.keyed.kgStart, t.keyed.kgEnd, wm, t.e.o.Limits.TimersPerFiring)
		if err == nil {
			for _, tm := range due {
				if err = t.keyed.expire(b, tm); err != nil {
					break
				}
			}
		}
		if err != nil {
			b.Discard()
			return fmt.Errorf("%s: expiring state: %w", t.name(), err)
		}
		if len(due) == 0 {
			b.Discard()
			return nil
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("%s: expiring state: %w", t.name(), err)
		}
	}
}

// bundle runs one bundle of input elements and fired timers, then
// commits its state, releases its outputs and finalizes it.
func (t *sdkTask) bundle(ctx context.Context, input [][]byte, fired []state.Timer) error {
	res, w, err := t.process(ctx, input, fired)
	if err != nil {
		return err
	}
	t.addPending(t.checkpointed...)
	t.checkpointed = nil
	for sink, data := range res.Outputs {
		if err := t.out.emit(ctx, t.sinkTo[sink], data); err != nil {
			return err
		}
	}
	t.e.metrics.add(t.ckID(), res.Response.GetMonitoringInfos())
	t.e.countInput(t.stage, elementsOf(res.Response.GetMonitoringInfos(), t.stage.Input))
	now := t.e.now()
	for _, r := range res.Response.GetResidualRoots() {
		t.delayed = append(t.delayed, residual{
			data:    r.GetApplication().GetElement(),
			wm:      residualWatermark(r.GetApplication()),
			readyAt: t.resumeAt(now, r.GetRequestedTimeDelay().AsDuration()),
		})
	}
	if res.Response.GetRequiresFinalization() && t.e.ck != nil {
		// Final only once a checkpoint covers the bundle.
		t.finalize = append(t.finalize, finalization{w: w, inst: res.InstructionID})
	} else if res.Response.GetRequiresFinalization() {
		if err := w.Finalize(ctx, res.InstructionID); err != nil {
			t.e.o.Logger.Warn("bundle finalization failed", "stage", t.name(), "err", err)
		}
	}
	return nil
}

// process runs one bundle, retrying it on failure: on a new worker when
// the worker died, on the same one when user code failed. State writes
// of a failed attempt are discarded; those of the successful one are
// committed before it returns.
func (t *sdkTask) process(ctx context.Context, input [][]byte, fired []state.Timer) (*harness.Result, harness.Worker, error) {
	var last error
	t.checkpointed = nil
	for attempt := 1; attempt <= t.e.o.MaxAttempts; attempt++ {
		w, err := t.e.pool.get(ctx, t.stage.EnvID)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", t.name(), err)
		}
		res, primary, err := t.attempt(ctx, w, input, fired)
		if err == nil {
			return res, w, nil
		}
		if primary != nil {
			input = primary
		}
		if ctx.Err() != nil {
			return nil, nil, context.Cause(ctx)
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return nil, nil, fatal.err
		}
		last = err
		t.e.o.Logger.Warn("bundle failed", "stage", t.name(), "attempt", attempt, "err", err)
		if errors.Is(err, harness.ErrWorkerGone) {
			continue
		}
		select {
		case <-t.e.o.Clock.After(time.Duration(attempt*attempt) * 50 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		}
	}
	var be *harness.BundleError
	if errors.As(last, &be) {
		return nil, nil, fmt.Errorf("stage %q failed after %d attempts: %s", t.stage.Name, t.e.o.MaxAttempts, be.Message)
	}
	return nil, nil, fmt.Errorf("stage %q failed after %d attempts: %w", t.stage.Name, t.e.o.MaxAttempts, last)
}

// attempt runs a bundle once. If the runner split it, primary is the
// input that stayed with it (nil otherwise): what a retry must run, as
// the residuals may already run elsewhere.
func (t *sdkTask) attempt(ctx context.Context, w harness.Worker, input [][]byte, fired []state.Timer) (res *harness.Result, primary [][]byte, err error) {
	desc := t.stage.ID
	if t.draining {
		desc = plan.DrainDescriptorID(t.stage)
	}
	spec := harness.BundleSpec{
		Descriptor: desc,
		Inputs:     map[string][][]byte{t.stage.SourceID: input},
		Outputs:    t.outputs,
		State:      &bundleState{sideState: t.side},
		PageBytes:  t.e.o.Limits.StateChunkBytes,
	}
	if t.stage.Splittable != "" {
		sp := newSplitter(t, w, input)
		spec.Started = func(id string) { sp.instID <- id }
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sp.run(ctx, done) }()
		defer func() {
			close(done)
			wg.Wait()
			if err == nil && res != nil {
				if read, ok := readIndexOf(res.Response.GetMonitoringInfos(), t.stage.SourceID); ok {
					if n := sp.settle(read); n > 0 {
						t.e.o.Logger.Debug("split residuals the bundle processed", "stage", t.name(), "elements", n)
					}
				}
			}
			// Residuals of checkpoint splits are this subtask's to run
			// next; a failed bundle is retried with its primary only,
			// as residuals shared with siblings may already run.
			t.checkpointed = append(t.checkpointed, sp.residuals()...)
			if p, ok := sp.primary(); ok {
				primary = p
			}
		}()
	}
	if t.keyed == nil {
		res, err = w.ProcessBundle(ctx, spec)
		if err == nil {
			err = t.bundleFault()
		}
		return res, nil, err
	}
	b := t.keyed.db.NewBundleSized()
	committed := false
	defer func() {
		if !committed {
			b.Discard()
		}
	}()
	spec.State = &bundleState{sideState: t.side, b: b, maxP: t.keyed.maxP, k: t.keyed}
	spec.EndTimers = t.keyed.endTimers
	if len(fired) > 0 {
		spec.Timers = map[harness.TimerKey][]byte{}
		for _, tm := range fired {
			k := harness.TimerKey{Transform: tm.Transform, Family: tm.Family}
			spec.Timers[k] = append(spec.Timers[k], tm.Encoded...)
			if err := b.ClearTimer(tm.TimerID); err != nil {
				return nil, nil, err
			}
		}
	}
	res, err = w.ProcessBundle(ctx, spec)
	if err != nil {
		return nil, nil, err
	}
	if len(res.Timers) > 0 {
		t.timersSet = true
	}
	if err := t.keyed.applyTimers(b, res.Timers); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.name(), err)
	}
	if err := t.bundleFault(); err != nil {
		return nil, nil, err
	}
	committed = true
	if err := b.Commit(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", t.name(), err)
	}
	return res, nil, nil
}

// residual is work a splittable DoFn deferred: its encoded element, the
// output watermark it reported, and when to resume it.
type residual struct {
	data    []byte
	wm      int64
	readyAt time.Time
}

// residualWatermark is the output watermark a residual holds: just below
// the lowest output watermark it reports (the minimum timestamp if it
// reports none). The SDK's estimate W means no later output before W, so
// output at W itself may still come, and weir's watermarks say everything
// at or before them is complete (see holdBelow).
func residualWatermark(a *fnpb.BundleApplication) int64 {
	wm := wire.MaxTimestamp
	for _, ts := range a.GetOutputWatermarks() {
		wm = min(wm, ts.AsTime().UnixMilli())
	}
	if len(a.GetOutputWatermarks()) == 0 {
		return wire.MinTimestamp
	}
	return holdBelow(wm)
}

// holdBelow is the highest watermark that output timestamped at ts may
// still follow. A weir watermark W says that every element at or before W
// has arrived: GroupByKeys fire windows whose max timestamp is at or
// before W, and timers due at or before W fire. So a hold at ts (a timer's
// output timestamp, an SDF's watermark estimate) keeps the watermark at
// ts-1; else a window ending at ts, such as the global window for timers
// set at its end, would fire before that output reached it.
func holdBelow(ts int64) int64 {
	if ts >= wire.MaxTimestamp || ts <= wire.MinTimestamp {
		return ts
	}
	return ts - 1
}

// resumeAt is when a deferred residual resumes: at once while draining.
func (t *sdkTask) resumeAt(now time.Time, delay time.Duration) time.Time {
	if t.draining {
		return now
	}
	return now.Add(delay)
}

// drainCh is the engine's drain signal for splittable stages (nil, which
// never fires, for the others or once draining).
func (t *sdkTask) drainCh() <-chan struct{} {
	if t.stage.Splittable == "" || t.draining {
		return nil
	}
	return t.e.drain
}

// startDrain switches a splittable stage to its drain descriptor and makes
// every deferred residual due now, so restrictions are truncated and end.
func (t *sdkTask) startDrain() {
	t.draining = true
	for i := range t.delayed {
		t.delayed[i].readyAt = time.Time{}
	}
}

// readyDelayed moves residuals due by now into the pending input.
func (t *sdkTask) readyDelayed(now time.Time) {
	kept := t.delayed[:0]
	for _, r := range t.delayed {
		if r.readyAt.After(now) {
			kept = append(kept, r)
			continue
		}
		t.addPending(r.data)
	}
	t.delayed = kept
}

// timerHold is the watermark the set timers hold: just below the earliest
// output timestamp of a set timer (holdBelow), or the maximum timestamp if
// none is set.
func (t *sdkTask) timerHold() (int64, error) {
	if t.keyed == nil || len(t.keyed.families) == 0 {
		return wire.MaxTimestamp, nil
	}
	b := t.keyed.db.NewBundle()
	defer b.Discard()
	h, ok, err := b.MinHold(t.keyed.kgStart, t.keyed.kgEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: reading timer holds: %w", t.name(), err)
	}
	if !ok {
		return wire.MaxTimestamp, nil
	}
	return holdBelow(h), nil
}

// hold is the output watermark hold of deferred residuals.
func (t *sdkTask) hold() int64 {
	h := wire.MaxTimestamp
	for _, r := range t.delayed {
		h = min(h, r.wm)
	}
	return h
}

// nextWake says how long to wait before the next deferred residual is due
// or processing-time timers must be checked.
func (t *sdkTask) nextWake() (time.Duration, bool) {
	var d time.Duration
	ok := false
	for _, r := range t.delayed {
		if w := r.readyAt.Sub(t.e.now()); !ok || w < d {
			d, ok = max(w, 0), true
		}
	}
	if t.keyed != nil && t.keyed.hasDomain(processingTime) && (!ok || d > procTimerCheck) {
		d, ok = procTimerCheck, true
	}
	return d, ok
}

// procTimerCheck is how often processing-time timers are looked for.
const procTimerCheck = 20 * time.Millisecond

// bundleFault is the crash a test injects after a bundle ran, before its
// state is committed and its output sent.
func (t *sdkTask) bundleFault() error {
	if t.e.ck == nil {
		return nil
	}
	if err := t.e.ck.fault(FaultBundle, 0); err != nil {
		return &fatalError{fmt.Errorf("%s: %w", t.name(), err)}
	}
	return nil
}

// fatalError fails the job instead of being retried.
type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }
