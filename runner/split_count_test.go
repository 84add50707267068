package runner_test

// Runtime splits of long splittable bundles: however often the runner
// splits a generator's running bundles (to share work with an idle
// sibling, or to end a bundle that ran too long), every generated element
// is processed exactly once.

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// splitGenFn emits 0..N-1 from a restriction split into Splits ranges.
type splitGenFn struct {
	N, Splits int64
}

func (f *splitGenFn) CreateInitialRestriction(int64) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: f.N}
}

func (f *splitGenFn) SplitRestriction(_ int64, r offsetrange.Restriction) []offsetrange.Restriction {
	return r.EvenSplits(f.Splits)
}

func (f *splitGenFn) RestrictionSize(_ int64, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (f *splitGenFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

// splitGenCalls counts the restrictions splitGenFn processed: more than
// its initial splits once the runner split some at run time.
var splitGenCalls atomic.Int64

func (f *splitGenFn) ProcessElement(rt *sdf.LockRTracker, _ int64, emit func(int64)) {
	splitGenCalls.Add(1)
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; rt.TryClaim(i); i++ {
		emit(i)
	}
}

// splitSeen counts how often each generated element reached slowCountFn
// (the LOOPBACK worker runs in the test's process).
var splitSeen []atomic.Int32

// slowCountFn records each element and takes a little time over it, so
// that the generator's bundles run long enough to be split.
type slowCountFn struct{}

func (*slowCountFn) ProcessElement(i int64) {
	splitSeen[i].Add(1)
	if i%64 == 0 {
		time.Sleep(time.Millisecond)
	}
}

// failOnceFn passes elements on, slowly, and fails its bundle the first
// time it sees element At.
type failOnceFn struct {
	At int64
}

var splitFailed atomic.Bool

func (f *failOnceFn) ProcessElement(i int64, emit func(int64)) error {
	if i == f.At && splitFailed.CompareAndSwap(false, true) {
		return fmt.Errorf("failing once at element %d", i)
	}
	if i%64 == 0 {
		time.Sleep(time.Millisecond)
	}
	emit(i)
	return nil
}

func init() {
	register.DoFn3x0[*sdf.LockRTracker, int64, func(int64)](&splitGenFn{})
	register.Emitter1[int64]()
	register.DoFn1x0[int64](&slowCountFn{})
	register.DoFn2x1[int64, func(int64), error](&failOnceFn{})
}

func TestRuntimeSplitsLoseAndRepeatNothing(t *testing.T) {
	const n = 200_000
	splitSeen = make([]atomic.Int32, n)
	splitGenCalls.Store(0)
	srv := startSplitting(t)
	p, s := beam.NewPipelineWithRoot()
	gen := beam.ParDo(s, &splitGenFn{N: n, Splits: 16}, beam.Create(s, int64(0)))
	beam.ParDo0(s, &slowCountFn{}, gen)
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
	var bad []string
	for i := range splitSeen {
		if c := splitSeen[i].Load(); c != 1 {
			bad = append(bad, fmt.Sprintf("%d×%d", i, c))
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d of %d elements were not processed exactly once (element×times): %v", len(bad), n, bad[:min(len(bad), 20)])
	}
	assertSplit(t, 16)
}

// startSplitting starts a weir server that splits a running generator
// bundle at its first look once it has emitted a few KiB, so that the
// tests below split at run time however fast or slow the machine is
// (with the defaults a bundle is split only after 500 ms or 4 MiB, or
// when a sibling is idle: a loaded machine may never reach that).
func startSplitting(t *testing.T) *runner.Server {
	t.Helper()
	return startWeirWith(t, runner.Config{Parallelism: 2, Limits: engine.Limits{
		SplitCheck:        2 * time.Millisecond,
		BundleOutputBytes: 4 << 10,
	}})
}

// assertSplit fails t unless the generator processed more restrictions
// than its initial splits: the runner split some at run time.
func assertSplit(t *testing.T, initial int64) {
	t.Helper()
	if c := splitGenCalls.Load(); c <= initial {
		t.Errorf("the generator processed %d restrictions from %d initial splits: no runtime split happened, the test did not test its subject", c, initial)
	} else {
		t.Logf("%d restrictions processed from %d initial splits", c, initial)
	}
}

// TestRuntimeSplitsWithRetry: a bundle that fails after the runner split
// it is retried with what stayed with it; the work split off runs once.
func TestRuntimeSplitsWithRetry(t *testing.T) {
	const n = 200_000
	splitFailed.Store(false)
	splitGenCalls.Store(0)
	srv := startSplitting(t)
	p, s := beam.NewPipelineWithRoot()
	gen := beam.ParDo(s, &splitGenFn{N: n, Splits: 16}, beam.Create(s, int64(0)))
	passed := beam.ParDo(s, &failOnceFn{At: n * 3 / 8}, gen)
	passert.Equals(s, stats.Sum(s, passed), int64(n)*(n-1)/2)
	passert.Equals(s, stats.CountElms(s, passed), n)
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
	if !splitFailed.Load() {
		t.Fatal("no bundle failed: the test did not test retries")
	}
	assertSplit(t, 16)
}
