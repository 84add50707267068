package runner_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

var (
	tallied = beam.NewCounter("committedtest", "tallied")
	values  = beam.NewDistribution("committedtest", "values")
)

// tallyFn counts the generated events and their values.
func tallyFn(ctx context.Context, _ string, v int64) {
	tallied.Inc(ctx, 1)
	values.Update(ctx, v)
}

func init() { register.Function3x0(tallyFn) }

// tallyPipeline generates sp's events (counting them in the generator's
// counter crash/generated) and tallies them in the same stage.
func tallyPipeline(sp CrashSpec) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	events := beam.ParDo(s.Scope("Generate"), &pacedGenFn{}, beam.Create(s.Scope("Spec"), sp))
	beam.ParDo0(s.Scope("Tally"), tallyFn, events)
	return p
}

// TestCommittedMetricsAfterRestore (issue 13 item 6): a checkpointed job
// fails in a bundle after a checkpoint completed and after bundles ran
// that the checkpoint does not hold; restored from it, the job runs them
// again. The attempted metrics count them twice; the committed metrics
// count every event exactly once.
func TestCommittedMetricsAfterRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	// The fault waits for a checkpoint to complete before the generator
	// ends, which a loaded machine may not manage in one run.
	for attempt := 1; attempt <= 3; attempt++ {
		if committedMetricsAfterRestore(t) {
			return
		}
		t.Logf("attempt %d: the job ended before the fault could fire; running it again", attempt)
	}
	t.Fatal("in three runs the fault never fired: no restore was tested")
}

// committedMetricsAfterRestore runs the job once and reports whether the
// fault fired (and so whether a restore was tested).
func committedMetricsAfterRestore(t *testing.T) bool {
	sp := CrashSpec{Events: 6000, Keys: 40, Batch: 25, PauseMS: 15, Splits: 2}
	// The fault fires at a bundle once a checkpoint L has completed and
	// six bundles have ended since, while no later checkpoint is
	// committing; from then on the failing run commits no checkpoint. So
	// the restore is from L. A subtask runs one bundle at a time and the
	// job has four SDK subtasks (two of them, Create's, done long before),
	// so a generator subtask completed a bundle after L committed, and
	// so after its snapshot for L: the restore runs it again.
	var (
		mu          sync.Mutex
		completed   int
		sinceCommit int
		committing  bool
		fired       bool
		restarts    atomic.Int64
	)
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 200 * time.Millisecond, Retained: 2, RestartAttempts: 2, RestartBackoff: 10 * time.Millisecond},
		CheckpointFault: func(point string, _ int64) error {
			mu.Lock()
			defer mu.Unlock()
			switch point {
			case engine.FaultBeforeCommit:
				if fired && restarts.Load() == 0 {
					return errors.New("the run is failing: it commits no more checkpoints")
				}
				committing = true
			case engine.FaultBundle:
				sinceCommit++
				if !fired && completed > 0 && !committing && sinceCommit >= 6 {
					fired = true
					return errors.New("injected bundle failure")
				}
			}
			return nil
		},
		OnRestart: func(string) { restarts.Add(1) },
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			mu.Lock()
			defer mu.Unlock()
			committing = false
			if s.Failed == "" {
				completed++
				sinceCommit = 0
			}
		},
	})
	res, err := runOnEndpoint(t, srv.Endpoint(), tallyPipeline(sp))
	if err != nil {
		t.Fatalf("job failed: %v", err)
	}
	mu.Lock()
	didFire, n := fired, completed
	mu.Unlock()
	if !didFire {
		return false
	}
	if restarts.Load() == 0 {
		t.Fatalf("the fault fired but the job did not restart (%d checkpoints completed)", n)
	}
	t.Logf("%d checkpoints completed, %d restarts", n, restarts.Load())

	q := res.Metrics().AllMetrics()
	var sum int64
	for i := range sp.Events {
		sum += i
	}
	found := map[string]bool{}
	for _, c := range q.Counters() {
		if c.Name() != "generated" && c.Name() != "tallied" {
			continue
		}
		found[c.Name()] = true
		t.Logf("counter %s: attempted %d, committed %d, true count %d", c.Name(), c.Attempted, c.Committed, sp.Events)
		if c.Committed != sp.Events {
			t.Errorf("counter %s: committed %d, want exactly %d", c.Name(), c.Committed, sp.Events)
		}
		if c.Attempted <= sp.Events {
			t.Errorf("counter %s: attempted %d, want more than %d: the bundles run again after the restore count there", c.Name(), c.Attempted, sp.Events)
		}
	}
	for _, d := range q.Distributions() {
		if d.Name() != "values" {
			continue
		}
		found[d.Name()] = true
		want := metrics.DistributionValue{Count: sp.Events, Sum: sum, Min: 0, Max: sp.Events - 1}
		if d.Committed != want {
			t.Errorf("distribution values: committed %+v, want %+v", d.Committed, want)
		}
		if d.Attempted.Count <= sp.Events || d.Attempted.Sum <= sum {
			t.Errorf("distribution values: attempted %+v, want more than %+v", d.Attempted, want)
		}
	}
	if len(found) != 3 {
		t.Errorf("the job reported %v of counters generated and tallied and distribution values", found)
	}
	return true
}

// savedCounter is counter name as checkpoint m recorded it: attempted and
// committed.
func savedCounter(m *checkpoint.Metadata, name string) (attempted, committed int64) {
	if m.Metrics == nil {
		return 0, 0
	}
	sum := func(ms []checkpoint.Metric) int64 {
		var n int64
		for _, x := range ms {
			if x.Labels["NAME"] == name && len(x.Values) == 1 {
				n += x.Values[0]
			}
		}
		return n
	}
	return sum(m.Metrics.Attempted), sum(m.Metrics.Committed)
}
