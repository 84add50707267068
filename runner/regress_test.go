package runner_test

// Regressions found by pipelines written as a new user would write them
// (issue 13): each runs through a weir server here and, with
// WEIR_TEST_INPROCESS=1, in process as --runner=weir runs it.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/runner/plan"
)

// GlobalSpec is the input of globalGenFn: Events events over Keys int64
// keys, from Splits initial restrictions.
type GlobalSpec struct {
	Events, Keys, Splits int64
}

// globalGenFn emits (i mod Keys, 1) for i in its restriction, in the
// global window.
type globalGenFn struct{}

func (globalGenFn) CreateInitialRestriction(s GlobalSpec) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: s.Events}
}

func (globalGenFn) SplitRestriction(s GlobalSpec, r offsetrange.Restriction) []offsetrange.Restriction {
	return r.EvenSplits(max(s.Splits, 1))
}

func (globalGenFn) RestrictionSize(_ GlobalSpec, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (globalGenFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

func (globalGenFn) ProcessElement(rt *sdf.LockRTracker, s GlobalSpec, emit func(int64, int64)) {
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; rt.TryClaim(i); i++ {
		emit(i%s.Keys, 1)
	}
}

// endOfGlobalCountFn counts each key's events in a Value and sets an
// event-time timer at the end of the global window on every element: the
// timers are due only when the input ends.
type endOfGlobalCountFn struct {
	Count state.Value[int64]
	Flush timers.EventTime
}

func (fn *endOfGlobalCountFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, key int64, v int64, _ func(int64, int64)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	fn.Flush.Set(tp, w.MaxTimestamp().ToTime())
	return fn.Count.Write(sp, n+v)
}

func (fn *endOfGlobalCountFn) OnTimer(sp state.Provider, tp timers.Provider, key int64, _ timers.Context, emit func(int64, int64)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	emit(key, n)
	return fn.Count.Clear(sp)
}

func countOfKV(_ int64, n int64) int64 { return n }

func init() {
	register.DoFn3x0[*sdf.LockRTracker, GlobalSpec, func(int64, int64)](&globalGenFn{})
	register.Emitter2[int64, int64]()
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, int64, int64, func(int64, int64), error](&endOfGlobalCountFn{})
	register.Function2x1(countOfKV)
}

// endOfGlobalPipeline counts per key with timers at the end of the global
// window; passert checks that every key fired once and the counts sum to
// the events.
func endOfGlobalPipeline(sp GlobalSpec) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	events := beam.ParDo(s, &globalGenFn{}, beam.Create(s, sp))
	counts := beam.ParDo(s, &endOfGlobalCountFn{
		Count: state.MakeValueState[int64]("count"),
		Flush: timers.InEventTime("flush"),
	}, events)
	n := beam.ParDo(s, countOfKV, counts)
	passert.Equals(s.Scope("SumIsEvents"), stats.Sum(s, n), sp.Events)
	passert.Equals(s.Scope("KeysFireOnce"), stats.CountElms(s, n), int(min(sp.Keys, sp.Events)))
	return p
}

// TestTimersAtEndOfGlobalWindow: timers at the end of the global window
// are due only when the input ends; their output, timestamped there, must
// reach the global combines after it before the watermark passes that
// window. They once fired the combines in many panes, each read as a
// separate result: a job of 40,000 events over 40,000 keys reported 4,901
// keys. With a few timers per firing the same path runs at 300 events.
func TestTimersAtEndOfGlobalWindow(t *testing.T) {
	for _, c := range []struct {
		spec   GlobalSpec
		par    int
		limits engine.Limits
	}{
		{GlobalSpec{Events: 300, Keys: 200, Splits: 2}, 2, engine.Limits{TimersPerFiring: 3, StatefulBundleBytes: 64}},
		{GlobalSpec{Events: 1000, Keys: 999, Splits: 3}, 4, engine.Limits{TimersPerFiring: 7, MessageBytes: 100, InboxSize: 1}},
		{GlobalSpec{Events: 40_000, Keys: 40_000, Splits: 2}, 4, engine.Limits{}},
	} {
		t.Run(fmt.Sprintf("%d_over_%d_p%d_timers%d", c.spec.Events, c.spec.Keys, c.par, c.limits.TimersPerFiring), func(t *testing.T) {
			srv := startWeirWith(t, runner.Config{Parallelism: c.par, Limits: c.limits})
			if err := runOn(t, srv, endOfGlobalPipeline(c.spec), "loopback"); err != nil {
				t.Fatalf("pipeline failed: %v", err)
			}
		})
	}
}

// emit123 emits 1, 2 and 3.
func emit123(_ []byte, emit func(int)) {
	for i := 1; i <= 3; i++ {
		emit(i)
	}
}

// checkTwiceEach fails unless its input is 1, 1, 2, 2, 3, 3.
func checkTwiceEach(_ []byte, xs func(*int) bool) error {
	got := map[int]int{}
	var x int
	for xs(&x) {
		got[x]++
	}
	if len(got) != 3 || got[1] != 2 || got[2] != 2 || got[3] != 2 {
		return fmt.Errorf("flattened branches hold %v, want 1, 2 and 3 twice each", got)
	}
	return nil
}

func init() {
	register.Function2x0(emit123)
	register.Emitter1[int]()
	register.Function2x1(checkTwiceEach)
	register.Iter1[int]()
}

// TestFlattenBranchesOfOneDoFn: one DoFn applied twice to the same Impulse,
// the two outputs flattened: both branches reach the flattened
// PCollection's readers (weir once delivered 1, 2, 3).
func TestFlattenBranchesOfOneDoFn(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	imp := beam.Impulse(s)
	a := beam.ParDo(s, emit123, imp)
	b := beam.ParDo(s, emit123, imp)
	both := beam.Flatten(s, a, b)
	beam.ParDo0(s, checkTwiceEach, beam.Impulse(s), beam.SideInput{Input: both})
	passert.NonEmpty(s, both)
	srv := startWeir(t, 2)
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("pipeline failed: %v", err)
	}
}

// errSplitTracker is an offset range tracker whose TrySplit fails.
type errSplitTracker struct {
	*offsetrange.Tracker
}

const splitRefusal = "weir-test: this tracker refuses to split"

func (t *errSplitTracker) TrySplit(float64) (any, any, error) {
	return nil, nil, errors.New(splitRefusal)
}

// refusingSplitFn emits N elements slowly from a restriction whose
// tracker refuses every split.
type refusingSplitFn struct {
	N int64
}

func (f *refusingSplitFn) CreateInitialRestriction([]byte) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: f.N}
}

func (f *refusingSplitFn) SplitRestriction(_ []byte, r offsetrange.Restriction) []offsetrange.Restriction {
	return []offsetrange.Restriction{r}
}

func (f *refusingSplitFn) RestrictionSize(_ []byte, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (f *refusingSplitFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(&errSplitTracker{offsetrange.NewTracker(r)})
}

func (f *refusingSplitFn) ProcessElement(rt *sdf.LockRTracker, _ []byte, emit func(int64)) {
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; rt.TryClaim(i); i++ {
		time.Sleep(20 * time.Millisecond)
		emit(i)
	}
}

func init() {
	register.DoFn3x0[*sdf.LockRTracker, []byte, func(int64)](&refusingSplitFn{})
}

// TestSplitErrorFailsJob: a splittable DoFn whose tracker refuses to
// split fails the job with the tracker's error as soon as the runner asks
// for a split (the runner once retried the split for as long as the bundle
// ran). 100 elements at 20 ms take 2 s a bundle; a split is asked after
// 50 ms, and each of the bundle's attempts fails then.
func TestSplitErrorFailsJob(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	beam.ParDo(s, &refusingSplitFn{N: 100}, beam.Impulse(s))
	srv := startWeirWith(t, runner.Config{Parallelism: 1, Limits: engine.Limits{BundleTime: 50 * time.Millisecond}})
	start := time.Now()
	err := runOn(t, srv, p, "loopback")
	if err == nil || !strings.Contains(err.Error(), splitRefusal) {
		t.Fatalf("job ended with %v, want a failure naming %q", err, splitRefusal)
	}
	t.Logf("failed after %v: %v", time.Since(start), err)
}

// TestPlanIsDeterministic: two runs of one program plan the same stages
// with the same IDs, which its checkpoints are keyed by. The Go SDK lists
// root transforms in varying order; weir once numbered stages in that
// order, and every --resume of a program killed with SIGKILL failed with
// "checkpoint has no state for subtask".
func TestPlanIsDeterministic(t *testing.T) {
	var prev string
	for i := 0; i < 20; i++ {
		p := endOfGlobalPipeline(GlobalSpec{Events: 10, Keys: 10, Splits: 1})
		edges, _, err := p.Build()
		if err != nil {
			t.Fatal(err)
		}
		env, _ := graphx.CreateEnvironment(context.Background(), "beam:env:external:v1", func(context.Context) string { return "" })
		pb, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
		if err != nil {
			t.Fatal(err)
		}
		pl, err := plan.Build(pb, plan.Options{LiftCombiners: true})
		if err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, st := range pl.Stages {
			s += fmt.Sprintf("%s %s %v\n", st.ID, st.Name, st.Transforms)
		}
		if prev != "" && s != prev {
			t.Errorf("run %d differs:\n%s\nvs\n%s", i, s, prev)
		}
		prev = s
	}
}
