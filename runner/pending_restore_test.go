package runner_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// keyMod20 keys x by x mod 20.
func keyMod20(x int, emit func(string, int64)) {
	emit("k"+strconv.Itoa(x%20), int64(x))
}

func init() { register.Function2x0(keyMod20) }

// TestRestoreOvertakenInput: the source ends at once while the keyed
// counting lags (each element takes 300µs), so checkpoints let their barrier overtake queued input
// and keep it with the snapshot (a file beside the subtask's Pebble files).
// A bundle fails after checkpoints have completed; the job restarts from
// the last one, and the counts must be exact: the overtaken input ran
// once, after the restore.
func TestRestoreOvertakenInput(t *testing.T) {
	// Whether a checkpoint completes before the job ends depends on the
	// machine's load (the keyed stage's bundles are long); a run where none
	// did tests no restore, so the job runs again, up to three times.
	// Small stateful bundles let barriers in between them, so a checkpoint
	// completes while input is still queued.
	for attempt := 1; attempt <= 3; attempt++ {
		if restoreOvertakenInput(t) {
			return
		}
		t.Logf("attempt %d: no checkpoint completed before the job ended; running it again", attempt)
	}
	t.Fatal("no run completed a checkpoint before it ended: no restore was tested")
}

// restoreOvertakenInput runs the job once; it reports whether the fault
// fired (and so a restore was tested), and fails t if the job failed or
// did not restart after the fault.
func restoreOvertakenInput(t *testing.T) bool {
	const n, keys = 8000, 20
	var completed, restarts atomic.Int64
	var fired atomic.Bool
	dir := t.TempDir()
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Limits:      engine.Limits{StatefulBundleBytes: 512},
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + dir, Interval: 30 * time.Millisecond, Retained: 1000, RestartAttempts: 2, RestartBackoff: 10 * time.Millisecond},
		CheckpointFault: func(point string, _ int64) error {
			if point == engine.FaultBundle && completed.Load() >= 1 && fired.CompareAndSwap(false, true) {
				return fmt.Errorf("injected bundle failure")
			}
			return nil
		},
		OnRestart: func(string) { restarts.Add(1) },
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			if s.Failed == "" {
				completed.Add(1)
			}
		},
	})
	p, s := beam.NewPipelineWithRoot()
	in := make([]any, n)
	for i := range in {
		in[i] = i
	}
	counts := beam.ParDo(s, &keyCountFn{
		Count: state.MakeValueState[int64]("count"),
		Sum:   state.MakeValueState[int64]("sum"),
		Flush: timers.InEventTime("flush"),
		Pause: 300 * time.Microsecond,
	}, beam.ParDo(s, keyMod20, beam.Reshuffle(s, beam.Create(s, in...))))
	var want []any
	for k := range keys {
		sum := 0
		for x := k; x < n; x += keys {
			sum += x
		}
		want = append(want, fmt.Sprintf("k%d=%d/%d", k, n/keys, sum))
	}
	passert.Equals(s, counts, want...)
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	if !fired.Load() {
		return false
	}
	if restarts.Load() == 0 {
		t.Fatalf("the fault fired but the job did not restart (%d checkpoints completed)", completed.Load())
	}
	t.Logf("%d checkpoints completed, %d restarts", completed.Load(), restarts.Load())
	// Some checkpoint kept input its barrier overtook: its snapshot names
	// the pending input file.
	st, err := storage.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	overtook := false
	for _, job := range srv.Jobs().Jobs() {
		metas, _, err := checkpoint.List(context.Background(), st, job.Name)
		if err != nil {
			t.Fatalf("listing checkpoints: %v", err)
		}
		for _, m := range metas {
			for _, sub := range m.Subtasks {
				overtook = overtook || strings.Contains(string(sub.SourcePosition), `"pending_file"`)
			}
		}
	}
	if !overtook {
		t.Errorf("no checkpoint kept overtaken input: the test did not test its subject")
	}
	return true
}
