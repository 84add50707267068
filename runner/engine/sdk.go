package engine

import (
	"context"
	"fmt"
	"time"

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
	// overtaking is the checkpoint the coordinator asked for, all inputs
	// having ended, while the subtask reads what is queued (0: none).
	overtaking int64
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
		db, err := base.openState(ctx, dir, cache, true)
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
// every input has ended (chk: the subtask then takes in what is queued
// without running it until it snapshots, see overtake), or, with none of
// them set, a wake-up: a deferred residual or processing-time timers may
// be due, or pending input can run.
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
	return t.frozen() || !t.allDone() || len(t.pending) > 0 || len(t.delayed) > 0 || t.park.any
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
	if t.frozen() {
		wake = nil // stopped: only the end of the run (or a barrier) comes
	}
	select {
	case chk := <-t.trig:
		return sdkEvent{chk: chk}, nil
	default:
	}
	inbox := t.in
	switch {
	case t.overtaking > 0:
		wake = nil // only what is queued matters until the snapshot
	case t.stepwise() && t.pendingBytes >= t.bundleBytes() && t.stage.Splittable == "":
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
	if ev.chk > t.snapped {
		t.overtaking = max(t.overtaking, ev.chk)
	}
	switch {
	case t.overtaking > 0:
		if ev.drain {
			t.startDrain()
		}
		if done, err := t.overtake(ctx, ev.m); err != nil || !done {
			return err
		}
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
	}
	if t.frozen() {
		return nil // a source stopped at a savepoint: nothing more
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
	if advanced && len(t.pending) > 0 {
		// Stepwise, one bundle ran, and input that arrived before the
		// watermark moved is left (a restored backlog, overtaken input):
		// it runs first, in the steps that follow at once, and holds the
		// watermark until it has.
		in, advanced = t.inWM, false
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

// overtake takes the subtask's part of checkpoint t.overtaking, which the
// coordinator asked for once all the subtask's inputs ended: until the
// snapshot, each message still queued (m, one a step; nil for none) is
// taken into the pending input without running it, and the snapshot keeps
// it. The barrier need not wait behind a backlog. If barrier chk itself
// comes out of the queue first (the aligner completed it: a sender that
// had sent it ended afterwards), what follows it is after the checkpoint:
// the snapshot is taken there. done says the snapshot is taken and the
// subtask goes on as usual.
func (t *sdkTask) overtake(ctx context.Context, m *msg) (done bool, err error) {
	chk := t.overtaking
	if m != nil {
		switch m.kind {
		case msgData:
			if err := t.takeData(*m); err != nil {
				return false, err
			}
		case msgBarrier:
			if m.chk >= chk {
				t.overtaking = 0
				return true, t.snapshotNow(ctx, m.chk)
			} // older: an aborted checkpoint's
		default:
			t.ports[m.port].observe(*m)
		}
	}
	if chk <= t.snapped { // taken already, at its in-band barrier
		t.overtaking = 0
		return true, nil
	}
	if !t.allDone() {
		return false, nil
	}
	t.overtaking = 0
	return true, t.snapshotNow(ctx, chk)
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
