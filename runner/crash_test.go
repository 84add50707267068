package runner_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/checkpoint/storage/storagetest"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// The crash tests follow Pebble's metamorphic tests: a deterministic job
// (a paced generator, keyed counting in state with a timer, a sink that
// commits only on bundle finalization) runs with a fault injected at a
// point drawn from a seed; its committed output must equal the job's
// exact result, as an uninterrupted run commits it.
var (
	crashSeed   = flag.Uint64("crash.seed", 0, "seed of TestCrashRecovery's faults (0: from the clock)")
	crashRounds = flag.Int("crash.rounds", 2, "faulted runs per storage in TestCrashRecovery")
)

// CrashSpec is the generated input: event i has key "k<i mod Keys>" and
// value i. The generator claims Batch events, then pauses PauseMS.
type CrashSpec struct {
	Events, Keys, Batch, PauseMS, Splits int64
	Sink                                 string // names the committed-output set
}

// generated counts the events the generator emitted. A resumed job
// generates only what its checkpoint had not, and starts its metrics from
// the checkpoint's: committed counts each event once over the job's lives.
var generated = beam.NewCounter("crash", "generated")

type pacedGenFn struct{}

func (pacedGenFn) CreateInitialRestriction(s CrashSpec) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: s.Events}
}

func (pacedGenFn) SplitRestriction(s CrashSpec, r offsetrange.Restriction) []offsetrange.Restriction {
	return r.EvenSplits(max(s.Splits, 1))
}

func (pacedGenFn) RestrictionSize(_ CrashSpec, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (pacedGenFn) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

func (pacedGenFn) ProcessElement(ctx context.Context, rt *sdf.LockRTracker, s CrashSpec, emit func(beam.EventTime, string, int64)) sdf.ProcessContinuation {
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; i < r.Start+s.Batch; i++ {
		if !rt.TryClaim(i) {
			return sdf.StopProcessing()
		}
		emit(mtime.FromMilliseconds(i), "k"+strconv.FormatInt(i%s.Keys, 10), i)
		generated.Inc(ctx, 1)
	}
	return sdf.ResumeProcessingIn(time.Duration(s.PauseMS) * time.Millisecond)
}

// keyCountFn counts and sums each key's values in state; a timer at the
// end of the (global) window emits "key=count/sum" when the input ends.
// (Only then: the Go SDK runs the finalization callbacks of one plan
// instance once, so a sink that commits on finalization loses what later
// bundles on a reused plan register. See the README.)
type keyCountFn struct {
	Count state.Value[int64]
	Sum   state.Value[int64]
	Flush timers.EventTime
	// Pause is how long each element takes (a lagging stage).
	Pause time.Duration
}

func (fn *keyCountFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, key string, v int64, emit func(string)) error {
	time.Sleep(fn.Pause)
	n, ok, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	if !ok {
		fn.Flush.Set(tp, w.MaxTimestamp().ToTime())
	}
	sum, _, err := fn.Sum.Read(sp)
	if err != nil {
		return err
	}
	if err := fn.Sum.Write(sp, sum+v); err != nil {
		return err
	}
	return fn.Count.Write(sp, n+1)
}

func (fn *keyCountFn) OnTimer(sp state.Provider, tp timers.Provider, key string, _ timers.Context, emit func(string)) error {
	n, _, err := fn.Count.Read(sp)
	if err != nil {
		return err
	}
	sum, _, err := fn.Sum.Read(sp)
	if err != nil {
		return err
	}
	emit(fmt.Sprintf("%s=%d/%d", key, n, sum))
	return fn.Count.Clear(sp)
}

// committed holds what commitSinkFn made final, per sink name: line →
// times committed.
var committed = struct {
	sync.Mutex
	lines map[string]map[string]int
}{lines: map[string]map[string]int{}}

// commitSinkFn writes a line only when its bundle is finalized: after the
// checkpoint that covers the bundle completes. A bundle replayed after a
// restore commits once, so the output is exactly-once.
type commitSinkFn struct {
	Sink string
}

func (fn *commitSinkFn) ProcessElement(bf beam.BundleFinalization, line string) {
	sink := fn.Sink
	bf.RegisterCallback(time.Hour, func() error {
		committed.Lock()
		defer committed.Unlock()
		m := committed.lines[sink]
		if m == nil {
			m = map[string]int{}
			committed.lines[sink] = m
		}
		m[line]++
		return nil
	})
}

func init() {
	register.DoFn4x1[context.Context, *sdf.LockRTracker, CrashSpec, func(beam.EventTime, string, int64), sdf.ProcessContinuation](&pacedGenFn{})
	register.Emitter3[beam.EventTime, string, int64]()
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, string, int64, func(string), error](&keyCountFn{})
	register.Emitter1[string]()
	register.DoFn2x0[beam.BundleFinalization, string](&commitSinkFn{})
	beam.RegisterType(reflect.TypeOf((*CrashSpec)(nil)).Elem())
}

func crashPipeline(sp CrashSpec) *beam.Pipeline { return crashPipelineNamed(sp, "CountPerKey") }

// crashPipelineNamed is crashPipeline with the counting DoFn under scope
// count (a renamed transform).
func crashPipelineNamed(sp CrashSpec, count string) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	events := beam.ParDo(s.Scope("Generate"), &pacedGenFn{}, beam.Create(s.Scope("Spec"), sp))
	counts := beam.ParDo(s.Scope(count), &keyCountFn{
		Count: state.MakeValueState[int64]("count"),
		Sum:   state.MakeValueState[int64]("sum"),
		Flush: timers.InEventTime("flush"),
	}, events)
	beam.ParDo0(s.Scope("Commit"), &commitSinkFn{Sink: sp.Sink}, counts)
	return p
}

// expected is the exact result of sp: every key once, with its count and
// sum.
func (sp CrashSpec) expected() map[string]int {
	n, sum := map[int64]int64{}, map[int64]int64{}
	for i := int64(0); i < sp.Events; i++ {
		n[i%sp.Keys]++
		sum[i%sp.Keys] += i
	}
	out := map[string]int{}
	for k := range n {
		out[fmt.Sprintf("k%d=%d/%d", k, n[k], sum[k])] = 1
	}
	return out
}

// checkCommitted compares what sink committed with sp's exact result.
func checkCommitted(t *testing.T, sp CrashSpec, replay string) {
	t.Helper()
	committed.Lock()
	got := committed.lines[sp.Sink]
	committed.Unlock()
	want := sp.expected()
	var diffs []string
	for l, n := range got {
		if want[l] != n {
			diffs = append(diffs, fmt.Sprintf("%s committed %d times, want %d", l, n, want[l]))
		}
	}
	for l := range want {
		if got[l] == 0 {
			diffs = append(diffs, l+" never committed")
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
		}
		t.Fatalf("committed output differs from the exact result (replay: %s):\n%s", replay, strings.Join(diffs, "\n"))
	}
}

// fault crashes the job once, at the nth time point is reached.
type fault struct {
	point string
	n     int64
	seen  atomic.Int64
	fired atomic.Bool
}

func (f *fault) String() string { return fmt.Sprintf("%s #%d", f.point, f.n) }

func (f *fault) inject(point string, _ int64) error {
	if f == nil || point != f.point || f.fired.Load() {
		return nil
	}
	if f.seen.Add(1) == f.n && f.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("injected crash at %s", f)
	}
	return nil
}

var faultPoints = []struct {
	point string
	maxN  int64
}{
	{engine.FaultBundle, 40},
	{engine.FaultSnapshot, 12},
	{engine.FaultUpload, 8},
	{engine.FaultBeforeCommit, 4},
	{engine.FaultAfterCommit, 4},
}

func crashSpec(sink string) CrashSpec {
	return CrashSpec{Events: 3000, Keys: 40, Batch: 25, PauseMS: 15, Splits: 2, Sink: sink}
}

// openCrashStorage returns a checkpoint dir URL and server options for
// kind ("file" or "gs").
func openCrashStorage(t *testing.T, kind string) (string, []storage.Option) {
	t.Helper()
	if kind == "file" {
		return "file://" + t.TempDir(), nil
	}
	return "gs://weir-crash/checkpoints", []storage.Option{storage.WithGCSClient(storagetest.FakeGCSClient(t, "weir-crash"))}
}

// TestCrashRecovery crashes checkpointed jobs at random points and checks
// that, restored from their latest checkpoint, they commit exactly the
// output of an uninterrupted run, on file:// and on (fake) gs://.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	seed, rng := crashRand(t, 0)
	for _, kind := range []string{"file", "gs"} {
		t.Run(kind, func(t *testing.T) {
			for round := 0; round <= *crashRounds; round++ {
				var f *fault
				if round > 0 { // round 0 runs uninterrupted
					fp := faultPoints[rng.IntN(len(faultPoints))]
					f = &fault{point: fp.point, n: 1 + rng.Int64N(fp.maxN)}
				}
				sink := fmt.Sprintf("%s-%s-%d", t.Name(), kind, round)
				replay := fmt.Sprintf("-crash.seed=%d, %s round %d, fault %v", seed, kind, round, f)
				runCrashJob(t, kind, sink, f, replay)
				if f == nil || f.fired.Load() {
					continue
				}
				// The run reached the point fewer than n times: a drawn
				// fault that did not fire tests nothing, so the round runs
				// again with a fault that this run's count says will fire.
				if f.seen.Load() == 0 {
					t.Fatalf("fault point %s was never reached (replay: %s)", f.point, replay)
				}
				f = &fault{point: f.point, n: max(1, f.seen.Load()/2)}
				replay = fmt.Sprintf("%s, again with fault %v", replay, f)
				runCrashJob(t, kind, sink+"-again", f, replay)
				if !f.fired.Load() {
					t.Fatalf("fault %v did not fire (replay: %s)", f, replay)
				}
			}
		})
	}
}

// crashRand returns the test's seed (-crash.seed, or the clock) and a
// random source from it (stream tells tests apart), and logs how to replay.
func crashRand(t *testing.T, stream uint64) (uint64, *rand.Rand) {
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d; replay with: go test ./runner -run %s -crash.seed=%d", seed, t.Name(), seed)
	return seed, rand.New(rand.NewPCG(seed, stream))
}

func runCrashJob(t *testing.T, kind, sink string, f *fault, replay string) {
	t.Helper()
	dir, opts := openCrashStorage(t, kind)
	var restarts, done, failed atomic.Int64
	srv := startWeirWith(t, runner.Config{
		Parallelism:     2,
		Checkpoints:     runner.CheckpointConfig{Dir: dir, Interval: 50 * time.Millisecond, Retained: 2, RestartAttempts: 2, RestartBackoff: 10 * time.Millisecond},
		StorageOptions:  opts,
		CheckpointFault: f.inject,
		OnRestart:       func(string) { restarts.Add(1) },
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			if s.Failed != "" {
				failed.Add(1)
			} else {
				done.Add(1)
			}
		},
	})
	sp := crashSpec(sink)
	defer setFlag(&jobopts.JobName, strings.ReplaceAll(sink, "/", "-"))()
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("job failed (replay: %s): %v", replay, err)
	}
	if f != nil && f.fired.Load() != (restarts.Load() > 0) {
		t.Fatalf("fault fired %v but the job restarted %d times (replay: %s)", f.fired.Load(), restarts.Load(), replay)
	}
	t.Logf("%s: fault %v fired=%v, restarts %d, checkpoints %d completed, %d aborted", sink, f, f != nil && f.fired.Load(), restarts.Load(), done.Load(), failed.Load())
	if done.Load() < 2 {
		t.Errorf("only %d checkpoints completed: the job is too short to test recovery", done.Load())
	}
	checkCommitted(t, sp, replay)
}

// setFlag sets *p to v and returns what restores it.
func setFlag(p **string, v string) func() {
	old := **p
	**p = v
	return func() { **p = old }
}
