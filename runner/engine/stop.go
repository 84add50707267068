package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner/engine/coord"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/savepoint"
)

// Stopping with a savepoint (Flink's stop-with-savepoint).
//
// Without drain, the sources stop at a position: every splittable stage's
// subtask does nothing more once it has snapshotted a checkpoint that
// started after the stop was asked for (no bundle, no watermark, no end of
// output: it is frozen), so that checkpoint's barrier is the last thing
// the rest of the pipeline gets from the sources. When the checkpoint has
// completed (its bundles finalized: a transactional sink has committed
// exactly what the savepoint holds) it is written out as the savepoint,
// and the run ends; Run returns nil. A restore goes on from the sources'
// positions: nothing is lost or repeated. What stages downstream do
// between the barrier and the end on their own (processing-time timers)
// is not in the savepoint.
//
// With drain, the job drains (Drain: sources truncate their restrictions,
// the watermark reaches the end, every timer fires) and, when it has ended,
// its end is written as the savepoint: no state is left (every window,
// the global one included, has expired and its state is gone), no source
// position, and every Impulse has fired; a job started from it runs
// nothing.

// errStopped ends a run that stopped with a savepoint.
var errStopped = errors.New("stopped with a savepoint")

// stopState is the engine's part of a stop under way.
type stopState struct {
	// asked: a stop has been asked for (one per job).
	asked atomic.Bool
	// from: sources freeze once they have snapshotted checkpoint from or a
	// later one (0: no stop under way).
	from atomic.Int64
	// drained is the savepoint target of a stop with drain, written when
	// the run ends; done carries its outcome to Stop.
	drained *storage.Storage
	done    chan stopOutcome
}

type stopOutcome struct {
	dir string
	err error
}

// frozen says the subtask is a source that stopped at the stop's
// checkpoint: it runs nothing more and sends nothing more.
func (t *sdkTask) frozen() bool {
	from := t.e.stop.from.Load()
	return t.stage.Splittable != "" && from > 0 && t.snapped >= from
}

// Stop stops the running job with a savepoint into target and returns the
// savepoint directory's name relative to target once it is complete; the
// job's Run then returns nil. With drain, the job drains first (see the
// comment at the top of this file). format is the savepoint's (Savepoint);
// a drained job's savepoint holds no state, and is canonical.
func (e *Engine) Stop(ctx context.Context, target storage.Storage, drain bool, format savepoint.Format) (string, error) {
	if drain {
		return e.stopDrained(ctx, target)
	}
	c, err := e.liveCoordinator()
	if err != nil {
		return "", fmt.Errorf("stop with savepoint: %w", err)
	}
	if !e.stop.asked.CompareAndSwap(false, true) {
		return "", errors.New("stop with savepoint: the job is stopping already")
	}
	var from int64
	c.step(func(n *coord.Coordinator[finalization]) []coord.Action[finalization] {
		from = n.Next()
		e.stop.from.Store(from)
		return nil
	})
	for {
		meta, release, err := c.checkpointNow(ctx)
		if err != nil {
			e.stop.from.Store(0)
			e.stop.asked.Store(false)
			return "", fmt.Errorf("stop with savepoint: %w", err)
		}
		if meta.CheckpointID < from {
			// Under way before the stop: sources went on past its barrier.
			release()
			continue
		}
		dir, err := e.writeSavepoint(ctx, c, meta, target, format)
		release()
		if err != nil {
			// The sources are frozen: the run fails and restarts from
			// its latest checkpoint, the stream goes on.
			err = fmt.Errorf("stop with savepoint: writing checkpoint %d into %s: %w", meta.CheckpointID, target, err)
			e.stop.from.Store(0)
			e.stop.asked.Store(false)
			c.cancelRun(err)
			return "", err
		}
		e.o.Logger.Info("stopped with savepoint", "checkpoint", meta.CheckpointID, "target", target.String(), "dir", dir)
		c.cancelRun(errStopped)
		return dir, nil
	}
}

// stopDrained drains the job and asks Run to write the savepoint of its
// end into target, then waits for it.
func (e *Engine) stopDrained(ctx context.Context, target storage.Storage) (string, error) {
	if e.o.Checkpoint == nil || e.o.Checkpoint.Storage == nil {
		return "", errors.New("stop with savepoint: the job takes no checkpoints: run it with --checkpoint_dir")
	}
	if !e.running.Load() {
		return "", errors.New("stop with savepoint: the job is not running")
	}
	if !e.stop.asked.CompareAndSwap(false, true) {
		return "", errors.New("stop with savepoint: the job is stopping already")
	}
	e.stopMu.Lock()
	ended := e.ended
	e.stop.drained = &target
	e.stopMu.Unlock()
	if ended {
		return "", errors.New("stop with savepoint: the job has ended")
	}
	e.Drain()
	select {
	case out := <-e.stop.done:
		return out.dir, out.err
	case <-ctx.Done():
		return "", fmt.Errorf("stop with savepoint: waiting for the drain: %w", context.Cause(ctx))
	}
}

// endStop is called as Run returns err: a stop with drain gets its
// savepoint, of the drained job, or the reason there is none.
func (e *Engine) endStop(ctx context.Context, err error) error {
	e.stopMu.Lock()
	target := e.stop.drained
	e.stop.drained, e.ended = nil, true
	e.stopMu.Unlock()
	if target == nil {
		return err
	}
	if err != nil {
		e.stop.done <- stopOutcome{err: fmt.Errorf("stop with savepoint: the job ended before its drain did: %w", err)}
		return err
	}
	dir, werr := e.writeEndSavepoint(ctx, *target)
	if werr != nil {
		werr = fmt.Errorf("stop with savepoint: the job drained, but its savepoint into %s failed: %w", *target, werr)
		e.o.Logger.Error("stop with savepoint", "err", werr)
	} else {
		e.o.Logger.Info("drained and stopped with savepoint", "target", (*target).String(), "dir", dir)
	}
	e.stop.done <- stopOutcome{dir: dir, err: werr}
	return nil
}

// writeEndSavepoint writes the savepoint of a job that has drained: the
// pipeline's declarations, no state and no source position, every
// Impulse fired.
func (e *Engine) writeEndSavepoint(ctx context.Context, target storage.Storage) (string, error) {
	return e.writeNewSavepoint(ctx, target, "drained", func(_ *savepoint.Writer, m *savepoint.Metadata) error {
		for _, s := range e.plan.Stages {
			if s.Kind == plan.KindImpulse {
				m.FiredImpulses = append(m.FiredImpulses, e.plan.Components.GetTransforms()[s.Transforms[0]].GetUniqueName())
			}
		}
		slices.Sort(m.FiredImpulses)
		return nil
	})
}
