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

// TestEmbeddedPrimitives runs Beam's primitives suite on --runner=weir in
// this process, where each bundle runs through the in-process SDK worker
// (sdkharness.StartInProcess) rather than the Fn API: every pipeline of
// Beam's own tests (each validates its output with passert, so a wrong
// result fails the job), called as Beam's test of the same name calls it.
// The Fn API path runs the same suite through `weir serve` with the
// conformance driver. Left out: TestOomParDo (Dataflow only), TestDrain
// (it waits for an operator's drain through the Job API; the streaming
// example's test drains an embedded job) and TestParDoBundleFinalizer
// (TestEmbeddedBundleFinalizer below).
func TestEmbeddedPrimitives(t *testing.T) {
	if r := ptest.DefaultRunner(); r != "weir" {
		t.Fatalf("default runner is %q, want weir", r)
	}
	tests := []struct {
		name     string
		pipeline func() *beam.Pipeline
	}{
		{"Checkpointing", scoped(primitives.Checkpoints)},
		{"CoGBK", scoped(primitives.CoGBK)},
		{"Reshuffle", scoped(primitives.Reshuffle)},
		{"ReshuffleKV", scoped(primitives.ReshuffleKV)},
		{"GBKShortRead", scoped(primitives.GBKShortRead)},
		{"Flatten", scoped(primitives.Flatten)},
		{"FlattenDup", scoped(primitives.FlattenDup)},
		{"ParDoMultiOutput", primitives.ParDoMultiOutput},
		{"ParDoSideInput", primitives.ParDoSideInput},
		{"ParDoKVSideInput", primitives.ParDoKVSideInput},
		{"ParDoMultiMapSideInput", primitives.ParDoMultiMapSideInput},
		{"ParDoPipelineOptions", primitives.ParDoPipelineOptions},
		{"ValueState", scoped(primitives.ValueStateParDo)},
		{"ValueStateWindowed", scoped(primitives.ValueStateParDoWindowed)},
		{"ValueStateClear", scoped(primitives.ValueStateParDoClear)},
		{"BagState", scoped(primitives.BagStateParDo)},
		{"BagStateClear", scoped(primitives.BagStateParDoClear)},
		{"BagStateBlindWrite", scoped(primitives.BagStateBlindWriteParDo)},
		{"CombiningState", scoped(primitives.CombiningStateParDo)},
		{"MapState", scoped(primitives.MapStateParDo)},
		{"MapStateClear", scoped(primitives.MapStateParDoClear)},
		{"SetState", scoped(primitives.SetStateParDo)},
		{"SetStateClear", scoped(primitives.SetStateParDoClear)},
		{"OrderedListState", scoped(primitives.OrderedListStateParDo)},
		{"TestStreamStrings", scoped(primitives.TestStreamStrings)},
		{"TestStreamByteSliceSequence", scoped(primitives.TestStreamByteSliceSequence)},
		{"TestStreamInt64Sequence", scoped(primitives.TestStreamInt64Sequence)},
		{"TestStreamInt16Sequence", scoped(primitives.TestStreamInt16Sequence)},
		{"TestStreamTwoInt64Sequences", scoped(primitives.TestStreamTwoInt64Sequences)},
		{"TestStreamFloat64Sequence", scoped(primitives.TestStreamFloat64Sequence)},
		{"TestStreamTwoFloat64Sequences", scoped(primitives.TestStreamTwoFloat64Sequences)},
		{"TestStreamBoolSequence", scoped(primitives.TestStreamBoolSequence)},
		{"TestStreamTwoBoolSequences", scoped(primitives.TestStreamTwoBoolSequences)},
		{"TestStreamTwoUserTypeSequences", scoped(primitives.TestStreamTwoUserTypeSequences)},
		{"TestStreamSimple", scoped(primitives.TestStreamSimple)},
		{"TestStreamSimple_InfinityDefault", scoped(primitives.TestStreamSimple_InfinityDefault)},
		{"TestStreamToGBK", scoped(primitives.TestStreamToGBK)},
		{"TestStreamTimersEventTime", scoped(primitives.TestStreamTimersEventTime)},
		{"Timers_EventTime_Bounded", scoped(primitives.TimersEventTimeBounded)},
		{"Timers_EventTime_Unbounded", scoped(primitives.TimersEventTimeUnbounded)},
		{"Timers_EventTime_WithOutputTimestamp", scoped(primitives.TimersEventTime_WithOutputTimestamp)},
		{"Timers_EventTime_WithNoOutputTimestamp", scoped(primitives.TimersEventTime_WithNoOutputTimestamp)},
		{"Timers_ProcessingTime_Infinity", scoped(primitives.TimersProcessingTimeTestStream_Infinity)},
		{"Timers_ProcessingTime_Bounded", scoped(primitives.TimersProcessingTime_Bounded)},
		{"Timers_ProcessingTime_Unbounded", scoped(primitives.TimersProcessingTime_Unbounded)},
		{"Panes", scoped(primitives.Panes)},
		{"WindowSums_Lifted", scoped(primitives.WindowSums_Lifted)},
		{"WindowSums_GBK", scoped(primitives.WindowSums_GBK)},
		{"ValidateWindowedSideInputs", scoped(primitives.ValidateWindowedSideInputs)},
		{"TriggerDefault", scoped(primitives.TriggerDefault)},
		{"TriggerAlways", scoped(primitives.TriggerAlways)},
		{"TriggerElementCount", scoped(primitives.TriggerElementCount)},
		{"TriggerRepeat", scoped(primitives.TriggerRepeat)},
		{"TriggerAfterEndOfWindow", scoped(primitives.TriggerAfterEndOfWindow)},
		{"TriggerAfterAll", scoped(primitives.TriggerAfterAll)},
		{"TriggerAfterEach", scoped(primitives.TriggerAfterEach)},
		{"TriggerAfterAny", scoped(primitives.TriggerAfterAny)},
		{"TriggerAfterProcessingTime", scoped(primitives.TriggerAfterProcessingTime)},
		{"TriggerAfterProcessingTimeNotTriggered", scoped(primitives.TriggerAfterProcessingTimeNotTriggered)},
		{"TriggerAfterSynchronizedProcessingTime", scoped(primitives.TriggerAfterSynchronizedProcessingTime)},
		{"TriggerNever", scoped(primitives.TriggerNever)},
		{"TriggerOrFinally", scoped(primitives.TriggerOrFinally)},
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
