package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/savepoint/inspect"
)

// Upgrades: a savepoint of v1 of the crash tests' stateful pipeline
// restored into a changed v2. The refusals (a DoFn swapped under a name,
// a state coder changed, a key coder or windowing changed, a stateful
// transform removed) are planned without a job in runner/engine's
// TestRestorePlan; the renamed transform is TestGoldenSavepointRestores.
// Here run the upgrades that are accepted, each compared with the exact
// result of an uninterrupted run.

// passEventFn is a transform added upstream of the counting DoFn.
func passEventFn(ts beam.EventTime, k string, v int64) (beam.EventTime, string, int64) {
	return ts, k, v
}

// formatEventFn replaces the counting DoFn in a v2 without it.
func formatEventFn(k string, v int64) string { return fmt.Sprintf("%s:%d", k, v) }

// tallyV1 and tallyV2 are a struct kept in state (row coded) before and
// after it gained a field.
type tallyV1 struct{ Count, Sum int64 }
type tallyV2 struct {
	Count, Sum int64
	Last       int64 // new in v2
}

// structCountFn is keyCountFn with its count and sum in one struct: Version 1
// keeps a tallyV1, version 2 a tallyV2. Each version gives its struct's
// state the ID "tally" (and the other one "spare"), so the DoFn and its
// state keep their names while the struct gains a field: what a user's
// edit of the struct does.
type structCountFn struct {
	V1      state.Value[tallyV1]
	V2      state.Value[tallyV2]
	Flush   timers.EventTime
	Version int
}

func (fn *structCountFn) read(sp state.Provider) (count, sum int64, ok bool, err error) {
	if fn.Version == 1 {
		t, ok, err := fn.V1.Read(sp)
		return t.Count, t.Sum, ok, err
	}
	t, ok, err := fn.V2.Read(sp)
	return t.Count, t.Sum, ok, err
}

func (fn *structCountFn) ProcessElement(w beam.Window, sp state.Provider, tp timers.Provider, key string, v int64, emit func(string)) error {
	n, sum, ok, err := fn.read(sp)
	if err != nil {
		return err
	}
	if !ok {
		fn.Flush.Set(tp, w.MaxTimestamp().ToTime())
	}
	if fn.Version == 1 {
		return fn.V1.Write(sp, tallyV1{Count: n + 1, Sum: sum + v})
	}
	return fn.V2.Write(sp, tallyV2{Count: n + 1, Sum: sum + v, Last: v})
}

func (fn *structCountFn) OnTimer(sp state.Provider, tp timers.Provider, key string, _ timers.Context, emit func(string)) error {
	n, sum, _, err := fn.read(sp)
	if err != nil {
		return err
	}
	emit(fmt.Sprintf("%s=%d/%d", key, n, sum))
	return nil
}

func init() {
	register.Function3x3(passEventFn)
	register.Function2x1(formatEventFn)
	register.DoFn6x1[beam.Window, state.Provider, timers.Provider, string, int64, func(string), error](&structCountFn{})
	beam.RegisterType(reflect.TypeOf(tallyV1{}))
	beam.RegisterType(reflect.TypeOf(tallyV2{}))
}

// upgradePipeline is a version of the crash pipeline: with a transform
// added upstream of the counting DoFn, without the counting DoFn (the
// events are committed as they come), or counting with structCountFn of a
// version.
type upgradePipeline struct {
	upstream bool
	noCount  bool
	tally    int // 0: keyCountFn
}

func (u upgradePipeline) build(sp CrashSpec) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	events := beam.ParDo(s.Scope("Generate"), &pacedGenFn{}, beam.Create(s.Scope("Spec"), sp))
	if u.upstream {
		events = beam.ParDo(s.Scope("Upstream"), passEventFn, events)
	}
	var lines beam.PCollection
	switch {
	case u.noCount:
		lines = beam.ParDo(s.Scope("Format"), formatEventFn, events)
	case u.tally > 0:
		fn := &structCountFn{V1: state.MakeValueState[tallyV1]("tally"), V2: state.MakeValueState[tallyV2]("spare"), Flush: timers.InEventTime("flush"), Version: u.tally}
		if u.tally == 2 {
			fn.V1, fn.V2 = state.MakeValueState[tallyV1]("spare"), state.MakeValueState[tallyV2]("tally")
		}
		lines = beam.ParDo(s.Scope("CountPerKey"), fn, events)
	default:
		lines = beam.ParDo(s.Scope("CountPerKey"), &keyCountFn{
			Count: state.MakeValueState[int64]("count"),
			Sum:   state.MakeValueState[int64]("sum"),
			Flush: timers.InEventTime("flush"),
		}, events)
	}
	beam.ParDo0(s.Scope("Commit"), &commitSinkFn{Sink: sp.Sink}, lines)
	return p
}

// goldenSavepoint is the URL of the golden savepoint (TestGoldenSavepointRestores):
// v1 is the crash pipeline, taken mid-run of crashSpec with PauseMS 40.
func goldenSavepoint(t *testing.T) string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "savepoints", "savepoint-sp-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in testdata/savepoints, found %v (%v)", dirs, err)
	}
	abs, err := filepath.Abs(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	return "file://" + abs
}

// restoreInto runs p from the savepoint at spPath with cp's restore
// options on a new server at parallelism 3.
func restoreInto(t *testing.T, spPath string, cp runner.CheckpointConfig, p *beam.Pipeline, logger *slog.Logger, opts ...storage.Option) error {
	t.Helper()
	cp.Dir, cp.Interval, cp.Retained, cp.SavepointPath = "file://"+t.TempDir(), 100*time.Millisecond, 1, spPath
	srv := startWeirWith(t, runner.Config{Parallelism: 3, Checkpoints: cp, Logger: logger, StorageOptions: opts})
	return runOn(t, srv, p, "loopback")
}

// goldenIn returns the golden savepoint's URL in storage of kind "file"
// (where it is kept) or "gs" (copied into a fake GCS), with the storage
// options that reach it.
func goldenIn(t *testing.T, kind string) (string, []storage.Option) {
	t.Helper()
	url := goldenSavepoint(t)
	if kind == "file" {
		return url, nil
	}
	_, opts := openCrashStorage(t, "gs")
	ctx := context.Background()
	st, err := storage.Open(ctx, "gs://weir-crash/savepoints", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := strings.TrimPrefix(url, "file://")
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(src, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, filepath.Base(src)+"/"+f.Name(), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	return "gs://weir-crash/savepoints/" + filepath.Base(src), opts
}

// TestUpgradeAddedUpstream: v2 has a transform between the source and
// the counting DoFn. Started from v1's savepoint, on file:// and in (fake)
// GCS, it commits the exact result of v1's uninterrupted run: the names
// of the state's owners did not move.
func TestUpgradeAddedUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	for _, kind := range []string{"file", "gs"} {
		t.Run(kind, func(t *testing.T) {
			defer setFlag(&jobopts.JobName, "upgrade-upstream-"+kind)()
			want := crashSpec("upgrade-upstream-" + kind)
			want.PauseMS = 40
			fresh := want
			fresh.Events *= 2 // only a restored job commits want's result
			url, opts := goldenIn(t, kind)
			if err := restoreInto(t, url, runner.CheckpointConfig{}, upgradePipeline{upstream: true}.build(fresh), nil, opts...); err != nil {
				t.Fatalf("v2 with a transform added upstream, from v1's savepoint in %s: %v", kind, err)
			}
			checkCommitted(t, want, "v2 with a transform added upstream, from v1's savepoint in "+kind)
		})
	}
}

// TestUpgradeRemovedStatefulTransform: v2 has no counting DoFn. Its state
// has no place: the job is refused naming it, and with
// --allow_non_restored_state it runs without it, its restored source
// emitting exactly the events the savepoint had not counted yet.
func TestUpgradeRemovedStatefulTransform(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	defer setFlag(&jobopts.JobName, "upgrade-removed")()
	sp := goldenSavepoint(t)
	spec := crashSpec("upgrade-removed")
	spec.PauseMS = 40
	v2 := upgradePipeline{noCount: true}
	err := restoreInto(t, sp, runner.CheckpointConfig{}, v2.build(spec), nil)
	if err == nil || !strings.Contains(err.Error(), `"CountPerKey/runner_test.keyCountFn"`) || !strings.Contains(err.Error(), "--allow_non_restored_state") {
		t.Fatalf("v2 without the stateful transform: err = %v, want a refusal naming it and --allow_non_restored_state", err)
	}

	spec.Sink = "upgrade-removed-allowed"
	if err := restoreInto(t, sp, runner.CheckpointConfig{AllowNonRestored: true}, v2.build(spec), nil); err != nil {
		t.Fatalf("v2 without the stateful transform, --allow_non_restored_state: %v", err)
	}
	// The events counted in the savepoint's state, and those committed
	// after it, are every event once.
	counted := countedInSavepoint(t, sp)
	committed.Lock()
	got := committed.lines[spec.Sink]
	committed.Unlock()
	for line, n := range got {
		if n != 1 {
			t.Errorf("event %s committed %d times", line, n)
		}
	}
	if int64(len(got))+counted != spec.Events {
		t.Fatalf("%d events committed after the savepoint, %d counted in it: %d, want the %d events", len(got), counted, int64(len(got))+counted, spec.Events)
	}
}

// countedInSavepoint adds up the "count" state of the counting DoFn in
// the savepoint at url.
func countedInSavepoint(t *testing.T, url string) int64 {
	t.Helper()
	ctx := context.Background()
	cut := strings.LastIndex(url, "/")
	st, err := storage.Open(ctx, url[:cut])
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r, err := inspect.Open(ctx, st, url[cut+1:])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var total int64
	for e, err := range r.Entries(ctx, inspect.Filter{Transform: "CountPerKey/runner_test.keyCountFn", State: "count"}) {
		if err != nil {
			t.Fatal(err)
		}
		if se, ok := e.(*inspect.StateEntry); ok {
			n, _ := se.Value.(int64)
			total += n
		}
	}
	if total <= 0 {
		t.Fatalf("the savepoint %s counted no events", url)
	}
	return total
}

// TestUpgradeStructGainedField: v1 keeps a struct in state, v2 the struct
// with one more field. Go's row decoder refuses the old bytes; weir
// migrates them by field name on restore, and v2 commits the exact result
// of an uninterrupted run.
func TestUpgradeStructGainedField(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	defer setFlag(&jobopts.JobName, "upgrade-struct")()
	v1 := crashSpec("upgrade-struct-v1")
	v1.PauseMS = 40
	spPath := savepointMidRun(t, upgradePipeline{tally: 1}.build(v1))
	checkCommitted(t, v1, "v1, a savepoint taken while it ran")

	logs, logger := infoLogs()
	want := v1
	want.Sink = "upgrade-struct-v2"
	fresh := want
	fresh.Events *= 2 // only a restored job commits want's result
	if err := restoreInto(t, spPath, runner.CheckpointConfig{}, upgradePipeline{tally: 2}.build(fresh), logger); err != nil {
		t.Fatalf("v2 with a struct that gained a field, from v1's savepoint: %v", err)
	}
	checkCommitted(t, want, "v2 with a struct that gained a field, from v1's savepoint")
	if l := logs.String(); !strings.Contains(l, "state of the savepoint migrated") || !strings.Contains(l, "state=tally") || !strings.Contains(l, "fields added [Last]") {
		t.Errorf("no log of the migration of state tally:\n%s", l)
	}
}

// savepointMidRun runs p with checkpoints, takes a savepoint of it while
// it runs (as `weir savepoint take` does), waits for it to end, and
// returns the savepoint's URL.
func savepointMidRun(t *testing.T, p *beam.Pipeline) string {
	t.Helper()
	r := startLiveRun(t, "file", p, 2)
	spPath := r.take(t)
	if err := <-r.done; err != nil {
		t.Fatalf("the job failed: %v", err)
	}
	return spPath
}

// TestSavepointPlanOnly: with --savepoint_plan_only the job runs nothing
// and ends DONE; it logs the plan: the source restored, and the counting
// DoFn's state, mapped onto a transform of another DoFn, refused.
func TestSavepointPlanOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a job server")
	}
	defer setFlag(&jobopts.JobName, "upgrade-plan")()
	logs, logger := infoLogs()
	spec := crashSpec("upgrade-plan")
	err := restoreInto(t, goldenSavepoint(t), runner.CheckpointConfig{SavepointPlanOnly: true, TransformNameMapping: `{"CountPerKey/runner_test.keyCountFn":"CountPerKey/runner_test.structCountFn"}`},
		upgradePipeline{tally: 2, upstream: true}.build(spec), logger)
	if err != nil {
		t.Fatalf("a plan-only run: %v", err)
	}
	committed.Lock()
	n := len(committed.lines[spec.Sink])
	committed.Unlock()
	if n != 0 {
		t.Errorf("a plan-only run committed %d lines", n)
	}
	l := logs.String()
	for _, want := range []string{
		"savepoint restore plan (--savepoint_plan_only: the job does not run)",
		`source \"Generate/runner_test.pacedGenFn\": restored`,
		// keyCountFn's state, mapped onto the transform of structCountFn.
		`transform \"CountPerKey/runner_test.keyCountFn\" (now \"CountPerKey/runner_test.structCountFn\"): refused: its DoFn changed from beam:go:transform:dofn:v1 type github.com/weir-runner/weir/runner_test.keyCountFn to beam:go:transform:dofn:v1 type github.com/weir-runner/weir/runner_test.structCountFn`,
		`the job would be refused`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("the plan does not say %s:\n%s", want, l)
		}
	}
}

// infoLogs is a server logger at level Info, and what it logged.
func infoLogs() (*syncBuffer, *slog.Logger) {
	logs := &syncBuffer{}
	return logs, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// syncBuffer is a bytes.Buffer safe for a logger and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
