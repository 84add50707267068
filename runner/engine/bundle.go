package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/state"
)

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

// bundleBytes is how much input makes a full bundle.
func (t *sdkTask) bundleBytes() int {
	if t.keyed != nil {
		return t.e.o.Limits.StatefulBundleBytes
	}
	return t.e.o.Limits.BundleBytes
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
		t.e.finalize(ctx, finalization{w: w, inst: res.InstructionID})
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

// finalize runs the finalization callbacks of bundles whose effects are
// final. Once asked for, a finalization runs to its end even if ctx (the
// run's) ends meanwhile, for up to Limits.FinalizeTimeout after that: the
// request is in the worker's hands, and a job that returned without
// waiting for it would leave the worker committing for it afterwards.
func (e *Engine) finalize(ctx context.Context, fin ...finalization) {
	if len(fin) == 0 {
		return
	}
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	var mu sync.Mutex
	var timeout clockwork.Timer
	returned := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !returned {
			timeout = e.o.Clock.AfterFunc(e.o.Limits.FinalizeTimeout, func() {
				cancel(fmt.Errorf("the run ended %v before its finalizations did: %w", e.o.Limits.FinalizeTimeout, context.Cause(ctx)))
			})
		}
	})
	defer func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		returned = true
		if timeout != nil {
			timeout.Stop()
		}
	}()
	for _, f := range fin {
		if err := f.w.Finalize(fctx, f.inst); err != nil {
			e.o.Logger.Warn("bundle finalization failed", "err", err)
		}
	}
}
