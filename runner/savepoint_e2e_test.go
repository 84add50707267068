package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
)

// TestSavepointOfRunningJob takes a savepoint of a running checkpointed
// job through weir's savepoint service, as `weir savepoint take` does, and
// checks what it holds against the pipeline: the keyed counting DoFn's two
// value states and its timer for the same keys (state and timers taken
// at one barrier), the generator's residual restrictions, the fired
// Impulse; the files verify, and the job goes on to its exact result.
func TestSavepointOfRunningJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	for _, kind := range []string{"file", "gs"} {
		t.Run(kind, func(t *testing.T) { savepointRoundTrip(t, kind) })
	}
}

// savepointRoundTrip is TestSavepointOfRunningJob on storage kind ("file"
// or "gs", a fake GCS) for checkpoints and savepoints.
func savepointRoundTrip(t *testing.T, kind string) {
	defer setFlag(&jobopts.JobName, "sp")()
	sp := crashSpec("savepoint-run-" + kind)
	sp.PauseMS = 40 // long enough to be running when the savepoint is asked for
	r := startLiveRun(t, kind, crashPipeline(sp), 2)
	chkURL, spURL, opts := r.chkURL, r.spURL, r.opts
	spPath := r.take(t)
	// WEIR_WRITE_GOLDEN_SAVEPOINT=1 refreshes testdata/savepoints,
	// WEIR_WRITE_GOLDEN_NATIVE_SAVEPOINT=1 testdata/savepoints-native with
	// a native savepoint taken next (see TestGoldenSavepointRestores).
	golden := map[string]string{}
	if os.Getenv("WEIR_WRITE_GOLDEN_SAVEPOINT") != "" && kind == "file" {
		golden["savepoints"] = spPath
	}
	if os.Getenv("WEIR_WRITE_GOLDEN_NATIVE_SAVEPOINT") != "" && kind == "file" {
		golden["savepoints-native"] = r.takeAs(t, "native")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("the job failed: %v", err)
	}
	checkCommitted(t, sp, "a savepoint taken while it ran")

	if !strings.HasPrefix(spPath, spURL+"/savepoint-sp-") {
		t.Fatalf("savepoint path %q, want one in %s", spPath, spURL)
	}
	for out, p := range golden {
		out = filepath.Join("testdata", out)
		if err := os.RemoveAll(out); err != nil {
			t.Fatal(err)
		}
		if err := os.CopyFS(filepath.Join(out, filepath.Base(p)), os.DirFS(strings.TrimPrefix(p, "file://"))); err != nil {
			t.Fatal(err)
		}
	}
	st, err := storage.Open(ctx, spURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := savepoint.Open(ctx, st, filepath.Base(spPath))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	m := s.Metadata()
	records := func(files []savepoint.File, each func(savepoint.Record)) {
		t.Helper()
		for _, f := range files {
			r, err := s.Records(ctx, f.Path)
			if err != nil {
				t.Fatal(err)
			}
			for r.Next() {
				each(r.Record())
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			r.Close()
		}
	}
	var counted *savepoint.Transform
	for i := range m.Transforms {
		if strings.Contains(m.Transforms[i].UniqueName, "CountPerKey") {
			counted = &m.Transforms[i]
		}
	}
	if counted == nil {
		t.Fatalf("no stateful transform CountPerKey among %+v", m.Transforms)
	}
	states := map[string]map[string]bool{} // state ID -> keys
	timers := map[string]bool{}
	records(counted.Files, func(r savepoint.Record) {
		switch r := r.(type) {
		case *savepoint.StateRecord:
			if states[r.StateID] == nil {
				states[r.StateID] = map[string]bool{}
			}
			states[r.StateID][string(r.Key)] = true
		case *savepoint.TimerRecord:
			timers[string(r.Key)] = true
		}
	})
	count, sum := states["count"], states["sum"]
	if len(count) == 0 || len(count) > int(sp.Keys) || len(sum) != len(count) || len(timers) != len(count) {
		t.Fatalf("keys with a count %d, with a sum %d, with a timer %d (of %d keys): want the same keys, some", len(count), len(sum), len(timers), sp.Keys)
	}
	for k := range count {
		if !sum[k] || !timers[k] {
			t.Errorf("key %q has a count but no sum or no timer", k)
		}
	}
	// Decoded with the coders the savepoint declares: keys k<n>, counts
	// that add up to at most the events generated.
	if total := savedCount(t, st, filepath.Base(spPath), counted.UniqueName); total <= 0 || total > sp.Events {
		t.Errorf("the counts add up to %d of %d events", total, sp.Events)
	}
	residuals := 0
	for _, src := range m.Sources {
		records(src.Files, func(savepoint.Record) { residuals++ })
	}
	if residuals == 0 {
		t.Error("the savepoint of a running generator holds no residual restrictions")
	}
	if len(m.FiredImpulses) == 0 {
		t.Error("the savepoint records no fired Impulse")
	}

	// Replay at another parallelism: the same pipeline started from the
	// savepoint on 3 subtasks a stage (it was taken on 2) commits the
	// exact result, as the uninterrupted run did: the counts it restored
	// plus the events its restored generator positions had still to emit.
	srv3 := startWeirWith(t, runner.Config{
		Parallelism:    3,
		Checkpoints:    runner.CheckpointConfig{Dir: chkURL + "-replay", Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: spPath},
		StorageOptions: opts,
	})
	replay := sp
	replay.Sink = "savepoint-replay-" + kind
	// Its own Create says twice the events: only a job that really starts
	// from the savepoint (whose generator positions hold the old spec, and
	// whose Impulse has fired) still commits the old spec's result.
	fresh := replay
	fresh.Events *= 2
	if err := runOn(t, srv3, crashPipeline(fresh), "loopback"); err != nil {
		t.Fatalf("the job started from the savepoint failed: %v", err)
	}
	checkCommitted(t, replay, "started from a savepoint at parallelism 3")

	// Another pipeline has no place for the counting DoFn's state: refused
	// before it starts, naming it and the way out.
	err = runOn(t, srv3, sumsPipeline(keyMod3), "loopback")
	if err == nil || !strings.Contains(err.Error(), "has no place for") || !strings.Contains(err.Error(), "CountPerKey") || !strings.Contains(err.Error(), "--allow_non_restored_state") {
		t.Fatalf("another pipeline from the savepoint: err = %v, want a refusal naming the state and --allow_non_restored_state", err)
	}
}

// savedCount decodes the "count" state of transform in savepoint dir of
// st with the coders the savepoint declares, checks that it holds keys
// k<n> with positive counts, and returns their sum: the events the
// transform had counted when the savepoint was taken.
func savedCount(t *testing.T, st storage.Storage, dir, transform string) int64 {
	t.Helper()
	ctx := context.Background()
	r, err := inspect.Open(ctx, st, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var total int64
	for e, err := range r.Entries(ctx, inspect.Filter{Transform: transform, State: "count"}) {
		if err != nil {
			t.Fatal(err)
		}
		se, ok := e.(*inspect.StateEntry)
		if !ok {
			continue
		}
		key, _ := se.Key.(string)
		n, ok := se.Value.(int64)
		if !strings.HasPrefix(key, "k") || !ok || n <= 0 {
			t.Fatalf("count state decoded as key %#v, value %#v", se.Key, se.Value)
		}
		total += n
	}
	return total
}

// TestGoldenSavepointRestores: a savepoint written by an earlier build
// (testdata/savepoints, taken mid-run by TestSavepointOfRunningJob with
// WEIR_WRITE_GOLDEN_SAVEPOINT=1; testdata/savepoints-native, a native one
// taken next with WEIR_WRITE_GOLDEN_NATIVE_SAVEPOINT=1) still restores:
// started from it, the job commits the exact result of the run it was
// taken of. Every later build must pass this with the files as they are
// (format compatibility; for a native savepoint, of the DB's layout too).
func TestGoldenSavepointRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	golden := func(dir string) string {
		t.Helper()
		dirs, err := filepath.Glob(filepath.Join("testdata", dir, "savepoint-sp-*"))
		if err != nil || len(dirs) != 1 {
			t.Fatalf("want one golden savepoint in testdata/%s, found %v (%v)", dir, dirs, err)
		}
		abs, err := filepath.Abs(dirs[0])
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	abs, native := golden("savepoints"), golden("savepoints-native")
	defer setFlag(&jobopts.JobName, "golden")()
	for _, tc := range []struct {
		name, count, mapping, from string
		par                        int
	}{
		{"same pipeline", "CountPerKey", "", abs, 3},
		// The counting DoFn renamed: its state follows the mapping.
		{"renamed", "Counter", `{"CountPerKey":"Counter"}`, abs, 3},
		// Native (taken at parallelism 2): restored at twice that.
		{"native", "CountPerKey", "", native, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startWeirWith(t, runner.Config{
				Parallelism: tc.par,
				Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1,
					SavepointPath: "file://" + tc.from, TransformNameMapping: tc.mapping},
			})
			want := crashSpec("savepoint-golden-" + tc.count)
			if tc.from == native {
				want.Sink += "-native" // a sink of its own: checkCommitted reads what it committed
			}
			want.PauseMS = 40 // the spec the savepoint was taken of, but for its sink
			fresh := want
			fresh.Events *= 2 // only a restored job commits want's result
			if err := runOn(t, srv, crashPipelineNamed(fresh, tc.count), "loopback"); err != nil {
				t.Fatalf("the job started from the golden savepoint failed: %v", err)
			}
			checkCommitted(t, want, "started from the golden savepoint")
		})
	}
	// Renamed without a mapping: refused, naming the state and the ways out.
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: "file://" + abs},
	})
	err := runOn(t, srv, crashPipelineNamed(crashSpec("savepoint-golden-unmapped"), "Counter"), "loopback")
	if err == nil || !strings.Contains(err.Error(), "CountPerKey") || !strings.Contains(err.Error(), "--transform_name_mapping") {
		t.Fatalf("a renamed transform without a mapping: err = %v, want a refusal naming CountPerKey and --transform_name_mapping", err)
	}
	// The native savepoint into the renamed pipeline, with the mapping:
	// refused (its keys carry the transform IDs), naming the fix.
	srv = startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1,
			SavepointPath: "file://" + native, TransformNameMapping: `{"CountPerKey":"Counter"}`},
	})
	err = runOn(t, srv, crashPipelineNamed(crashSpec("savepoint-golden-native-renamed"), "Counter"), "loopback")
	if err == nil || !strings.Contains(err.Error(), "--transform_name_mapping renames state") || !strings.Contains(err.Error(), "take a canonical savepoint") {
		t.Fatalf("a native savepoint into a renamed transform: err = %v, want a refusal naming the mapping and the fix", err)
	}
}
