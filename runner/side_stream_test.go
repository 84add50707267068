package runner_test

// Side inputs of a streaming pipeline: a main input that reads a side input
// from an unbounded source runs per window, as the side input's watermark
// passes each window, instead of waiting for the source to end.

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/periodic"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// sideSeen is what readSideFn saw, per main element (the LOOPBACK worker
// runs in the test's process).
var sideSeen = struct {
	sync.Mutex
	at  map[int64]time.Time // main index → when it ran
	bad []string            // main elements that saw a wrong side window
}{at: map[int64]time.Time{}}

// readSideFn reads the side input window of a main element of a periodic
// sequence and checks it holds exactly the side sequence's indices of
// that window: both sequences have the same start and interval.
type readSideFn struct {
	StartMs, EndMs, IntervalMs, WindowMs int64
}

func (f *readSideFn) ProcessElement(w typex.Window, i int64, side func(*int64) bool) {
	now := time.Now()
	iw := w.(window.IntervalWindow)
	lo, hi := int64(iw.Start), int64(iw.End)
	want := map[int64]bool{}
	for k := int64(0); f.StartMs+k*f.IntervalMs < f.EndMs; k++ {
		if ts := f.StartMs + k*f.IntervalMs; ts >= lo && ts < hi {
			want[k] = true
		}
	}
	got := map[int64]bool{}
	var v int64
	for side(&v) {
		got[v] = true
	}
	sideSeen.Lock()
	defer sideSeen.Unlock()
	sideSeen.at[i] = now
	if len(got) != len(want) {
		sideSeen.bad = append(sideSeen.bad, fmt.Sprintf("main %d in [%d,%d) saw %d side values, want %d", i, lo, hi, len(got), len(want)))
		return
	}
	for k := range want {
		if !got[k] {
			sideSeen.bad = append(sideSeen.bad, fmt.Sprintf("main %d in [%d,%d) did not see side %d", i, lo, hi, k))
		}
	}
}

func init() {
	register.DoFn3x0[typex.Window, int64, func(*int64) bool](&readSideFn{})
	register.Iter1[int64]()
}

func TestStreamingSideInputPerWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a streaming pipeline for several seconds")
	}
	t.Run("plain", func(t *testing.T) { runSideStream(t, startWeir(t, 2)) })
	t.Run("checkpointing", func(t *testing.T) {
		// Side inputs and parked input are in the subtasks' Pebble
		// checkpoints.
		var completed atomic.Int64
		srv := startWeirWith(t, runner.Config{
			Parallelism: 2,
			Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 200 * time.Millisecond, Retained: 1},
			OnCheckpoint: func(_ string, s engine.CheckpointStats) {
				if s.Failed == "" {
					completed.Add(1)
				}
			},
		})
		runSideStream(t, srv)
		if completed.Load() < 2 {
			t.Errorf("%d checkpoints completed, want several", completed.Load())
		}
	})
}

// runSideStream runs a pipeline whose main input reads, per fixed window,
// a side input from an unbounded source, and checks the main input ran
// per window with complete side windows, long before the source ended.
func runSideStream(t *testing.T, srv *runner.Server) {
	const (
		interval = 250 * time.Millisecond
		win      = time.Second
		length   = 8 * time.Second
	)
	start := time.Now().Truncate(win).Add(win)
	end := start.Add(length)
	sideSeen.Lock()
	sideSeen.at, sideSeen.bad = map[int64]time.Time{}, nil
	sideSeen.Unlock()

	p, root := beam.NewPipelineWithRoot()
	seq := func(s beam.Scope) beam.PCollection {
		def := periodic.NewSequenceDefinition(start, end, interval)
		return beam.WindowInto(s, window.NewFixedWindows(win), periodic.Sequence(s, beam.Create(s, def)))
	}
	side := seq(root.Scope("side"))
	main := seq(root.Scope("main"))
	beam.ParDo0(root, &readSideFn{StartMs: start.UnixMilli(), EndMs: end.UnixMilli(),
		IntervalMs: interval.Milliseconds(), WindowMs: win.Milliseconds()}, main, beam.SideInput{Input: side})
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}

	sideSeen.Lock()
	defer sideSeen.Unlock()
	for _, b := range sideSeen.bad {
		t.Error(b)
	}
	n := int64(length / interval)
	if got := int64(len(sideSeen.at)); got != n {
		t.Errorf("%d main elements ran, want %d", got, n)
	}
	// The first window's main elements ran once its side window was
	// complete, long before the side input's source ended.
	perWindow := int64(win / interval)
	for i := int64(0); i < perWindow; i++ {
		at, ok := sideSeen.at[i]
		if !ok {
			continue
		}
		if i == 0 {
			t.Logf("main element 0 ran at %v from its window's end; the side input's source ended %v after that", at.Sub(start.Add(win)), length-win)
		}
		if limit := end.Add(-2 * time.Second); !at.Before(limit) {
			t.Errorf("main element %d of the first window ran at %v, %v after the side input's window ended; want it before %v",
				i, at.Format(time.StampMilli), at.Sub(start.Add(win)), limit.Format(time.StampMilli))
		}
	}
}
