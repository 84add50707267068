package conformance_test

import (
	"os"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/test/integration/primitives"

	// Registers --runner=weir: an embedded weir server in this process,
	// with the SDK harness in LOOPBACK mode.
	_ "github.com/weir-runner/weir/runner"
)

// TestMain makes weir the default runner of this package's pipelines.
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// runnerlib leaves a placeholder file in os.TempDir() for every
	// LOOPBACK job: keep them in a directory removed at exit.
	if dir, err := os.MkdirTemp("", "weir-conformance-test-"); err == nil {
		os.Setenv("TMPDIR", dir)
		defer os.RemoveAll(dir)
	}
	return ptest.MainRetWithDefault(m, "weir")
}

func scoped(build func(beam.Scope)) func() *beam.Pipeline {
	return func() *beam.Pipeline {
		p, s := beam.NewPipelineWithRoot()
		build(s)
		return p
	}
}

// TestEmbeddedPrimitives is the embedded smoke suite: pipelines from Beam's
// own integration suite (each validates its output with passert, so a
// wrong result fails the job) run on --runner=weir in this process. The
// full suite runs through `weir serve` with the conformance driver; this is
// the quick check that the in-process path works for each primitive.
func TestEmbeddedPrimitives(t *testing.T) {
	if r := ptest.DefaultRunner(); r != "weir" {
		t.Fatalf("default runner is %q, want weir", r)
	}
	tests := []struct {
		name     string
		pipeline func() *beam.Pipeline
	}{
		// ParDo: multiple outputs, side inputs.
		{"ParDoMultiOutput", primitives.ParDoMultiOutput},
		{"ParDoSideInput", primitives.ParDoSideInput},
		{"ParDoKVSideInput", primitives.ParDoKVSideInput},
		{"ParDoMultiMapSideInput", primitives.ParDoMultiMapSideInput},
		// GroupByKey, CoGroupByKey, Reshuffle.
		{"CoGBK", scoped(primitives.CoGBK)},
		{"GBKShortRead", scoped(primitives.GBKShortRead)},
		{"Reshuffle", scoped(primitives.Reshuffle)},
		{"ReshuffleKV", scoped(primitives.ReshuffleKV)},
		// Flatten, with an input flattened twice.
		{"Flatten", scoped(primitives.Flatten)},
		{"FlattenDup", scoped(primitives.FlattenDup)},
		// Windowing: GBK and lifted combines per window, windowed side inputs.
		{"WindowSums_GBK", scoped(primitives.WindowSums_GBK)},
		{"WindowSums_Lifted", scoped(primitives.WindowSums_Lifted)},
		{"ValidateWindowedSideInputs", scoped(primitives.ValidateWindowedSideInputs)},
		// User state.
		{"ValueState", scoped(primitives.ValueStateParDo)},
		{"ValueStateWindowed", scoped(primitives.ValueStateParDoWindowed)},
		{"ValueStateClear", scoped(primitives.ValueStateParDoClear)},
		{"BagState", scoped(primitives.BagStateParDo)},
		{"BagStateClear", scoped(primitives.BagStateParDoClear)},
		{"CombiningState", scoped(primitives.CombiningStateParDo)},
		{"MapState", scoped(primitives.MapStateParDo)},
		{"SetStateClear", scoped(primitives.SetStateParDoClear)},
		// Event-time timers in a bounded pipeline.
		{"TimersEventTimeBounded", scoped(primitives.TimersEventTimeBounded)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ptest.RunAndValidate(t, tc.pipeline())
		})
	}
}

// TestEmbeddedBundleFinalizer checks that weir calls the bundle
// finalization callbacks a DoFn registers, as Beam's
// TestParDoBundleFinalizer does (it needs the in-process LOOPBACK worker to
// see the callbacks' counter).
func TestEmbeddedBundleFinalizer(t *testing.T) {
	tests := []struct {
		name  string
		build func(beam.Scope)
		want  int32
	}{
		{"InProcessElement", primitives.ParDoProcessElementBundleFinalizer, primitives.BundleFinalizerProcess},
		{"InFinishBundle", primitives.ParDoFinishBundleFinalizer, primitives.BundleFinalizerFinish},
		{"InStartProcessFinishBundle", primitives.ParDoFinalizerInAll,
			primitives.BundleFinalizerStart + primitives.BundleFinalizerProcess + primitives.BundleFinalizerFinish},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			primitives.CountInvokeBundleFinalizer.Store(0)
			ptest.RunAndValidate(t, scoped(tc.build)())
			if got := primitives.CountInvokeBundleFinalizer.Load(); got != tc.want {
				t.Errorf("finalization callbacks counted %d, want %d", got, tc.want)
			}
		})
	}
}

// TestEmbeddedDetectsWrongOutput is the control for the suite above: a
// pipeline whose passert does not hold must fail on weir, or every pass
// above would mean nothing.
func TestEmbeddedDetectsWrongOutput(t *testing.T) {
	p, s := beam.NewPipelineWithRoot()
	passert.Equals(s, beam.Create(s, 1, 2, 3), 1, 2, 4)
	err := ptest.Run(p)
	if err == nil {
		t.Fatal("a pipeline with a failing passert succeeded on weir")
	}
	if !strings.Contains(err.Error(), "passert") && !strings.Contains(err.Error(), "unexpected") {
		t.Errorf("error %q does not look like passert's", err)
	}
}
