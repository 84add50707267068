package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/checkpoint"
)

// blockingFinalizer finalizes a bundle once release is closed, or fails
// when its context ends first.
type blockingFinalizer struct {
	started chan string
	release chan struct{}
	mu      sync.Mutex
	done    []string
	failed  []error
}

func (f *blockingFinalizer) Finalize(ctx context.Context, inst string) error {
	f.started <- inst
	select {
	case <-f.release:
		f.mu.Lock()
		f.done = append(f.done, inst)
		f.mu.Unlock()
		return nil
	case <-ctx.Done():
		err := context.Cause(ctx)
		f.mu.Lock()
		f.failed = append(f.failed, err)
		f.mu.Unlock()
		return err
	}
}

// TestFinalizeOutlivesTheRun: finalizations asked for run to their end
// even when the run's context ends meanwhile (seed 3589: a cancelled
// finalization left the worker committing after the job returned), and
// give up only FinalizeTimeout after the run ended.
func TestFinalizeOutlivesTheRun(t *testing.T) {
	clock := clockwork.NewFakeClock()
	limits := DefaultLimits
	limits.FinalizeTimeout = 5 * time.Second
	e := &Engine{o: Options{Clock: clock, Limits: limits, Logger: slog.New(slog.DiscardHandler)}}
	f := &blockingFinalizer{started: make(chan string, 4), release: make(chan struct{})}

	// The run fails while the first of two finalizations is under way:
	// both still run.
	ctx, cancel := context.WithCancelCause(context.Background())
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		e.finalize(ctx, finalization{w: f, inst: "b1"}, finalization{w: f, inst: "b2"})
	}()
	<-f.started
	cancel(errors.New("the run failed"))
	if err := clock.BlockUntilContext(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-returned:
		t.Fatal("finalize returned while a finalization was under way")
	default:
	}
	close(f.release)
	<-returned
	if len(f.done) != 2 || len(f.failed) != 0 {
		t.Fatalf("finalized %v, failed %v; want both finalized", f.done, f.failed)
	}

	// A finalization that does not end is given up FinalizeTimeout after
	// the run ended, saying why.
	f = &blockingFinalizer{started: make(chan string, 4), release: make(chan struct{})}
	ctx, cancel = context.WithCancelCause(context.Background())
	returned = make(chan struct{})
	go func() {
		defer close(returned)
		e.finalize(ctx, finalization{w: f, inst: "b3"})
	}()
	<-f.started
	cancel(errors.New("the run failed"))
	if err := clock.BlockUntilContext(testCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second)
	<-returned
	if len(f.failed) != 1 || len(f.done) != 0 {
		t.Fatalf("finalized %v, failed %v; want it given up", f.done, f.failed)
	}
}

// recordFinalizer notes, per bundle finalized, whether the job's end had
// been recorded by then.
type recordFinalizer struct {
	recorded *bool
	seen     map[string]bool
}

func (f *recordFinalizer) Finalize(_ context.Context, inst string) error {
	f.seen[inst] = *f.recorded
	return nil
}

// TestJobDoneRecordsBeforeFinalizing: at the job's end the runner records
// that the job finished (OnJobDone) before the bundles no checkpoint
// covered are finalized (metamorphic seed 4947: killed between the two, a
// resumed job replayed from its last checkpoint bundles whose output was
// already committed); when the record fails (storage refusing writes),
// the job's results are complete all the same and the bundles finalized.
func TestJobDoneRecordsBeforeFinalizing(t *testing.T) {
	for _, fail := range []bool{false, true} {
		recorded := false
		f := &recordFinalizer{recorded: &recorded, seen: map[string]bool{}}
		e := &Engine{o: Options{Clock: clockwork.NewFakeClock(), Limits: DefaultLimits, Logger: slog.New(slog.DiscardHandler)}, metrics: newMetrics(nil)}
		o := CheckpointOptions{OnJobDone: func(context.Context) error {
			if fail {
				return errors.New("storage unavailable")
			}
			recorded = true
			return nil
		}}
		c := newCoordinator(context.Background(), e, o, 1)
		id := checkpoint.SubtaskID{Stage: "s1", Subtask: 0}
		c.node.AddSubtask(id, checkpoint.KeyGroupRange{Start: 0, End: 128})
		c.node.Finished(id, []finalization{{w: f, inst: "b1"}})
		err := c.jobDone(context.Background())
		seen, ok := f.seen["b1"]
		switch {
		case err != nil || !ok:
			t.Errorf("record fails %v: err %v, finalized %v; want b1 finalized and no error", fail, err, f.seen)
		case !fail && !seen:
			t.Errorf("b1 was finalized before the job's end was recorded")
		}
	}
}
