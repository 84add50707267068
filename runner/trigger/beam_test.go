package trigger

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window/trigger"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// sdkTrigger translates a Go SDK trigger to the proto the SDK submits, the
// way a pipeline does (graphx.MarshalWindowingStrategy).
func sdkTrigger(t *testing.T, tr trigger.Trigger) *pipepb.Trigger {
	t.Helper()
	ws, err := graphx.MarshalWindowingStrategy(graphx.NewCoderMarshaller(),
		&window.WindowingStrategy{Fn: window.NewGlobalWindows(), Trigger: tr})
	if err != nil {
		t.Fatal(err)
	}
	return ws.GetTrigger()
}

// paneSums is the sum of each pane's values, as Beam's tests observe them
// (stats.Sum per pane, then passert over the sums).
func paneSums(panes []string) []int {
	var sums []int
	for _, p := range panes {
		vals := p[strings.Index(p, "{")+1 : strings.Index(p, "}")]
		sum := 0
		for _, v := range strings.Fields(vals) {
			n, _ := strconv.Atoi(v)
			sum += n
		}
		sums = append(sums, sum)
	}
	return sums
}

// TestBeamTriggerScenarios replays each TestTrigger* pipeline of Beam's Go
// integration suite (test/integration/primitives/windowinto.go): the same
// trigger from the Go SDK, the same TestStream events (every stream ends,
// so every script ends with "end"), and the same windows, with zero
// allowed lateness and discarding panes as the Go SDK submits them. want
// writes out every pane; beam is what the Beam test asserts about them.
func TestBeamTriggerScenarios(t *testing.T) {
	const fixed10s = 10_000
	for _, tc := range []struct {
		name   string
		tr     trigger.Trigger
		size   int64 // 0: global window
		script string
		want   []string
		// beam is what windowinto.go asserts: the pane sums (passert.Equals)
		// or, for validateCount, just their number.
		beamSums  []int
		beamCount int
	}{{
		name:   "TestTriggerDefault: one pane per window when the watermark passes its end",
		tr:     trigger.Default(),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 4,5@12000 wm=13000 end",
		want: []string{
			"[0s,10s) {1 2 3} wm 11000 last",
			"[10s,20s) {4 5} end last",
		},
		beamSums: []int{6, 9},
	}, {
		name:     "TestTriggerAlways: a pane per element",
		tr:       trigger.Always(),
		size:     fixed10s,
		script:   "1,2,3@1000 wm=11000 end",
		want:     []string{"[0s,10s) {1} elem 1", "[0s,10s) {2} elem 2", "[0s,10s) {3} elem 3"},
		beamSums: []int{1, 2, 3},
	}, {
		name:   "TestTriggerElementCount: AfterCount(2) fires once at the 2nd element and closes the window; the next window's lone element comes out at expiry",
		tr:     trigger.AfterCount(2),
		size:   fixed10s,
		script: "1,2,3@1000 wm=2000 4,5@6000 wm=10000 10@52000 wm=53000 end",
		want: []string{
			"[0s,10s) {1 2} elem 2 last",
			"[50s,60s) {10} end last",
		},
		beamCount: 2,
	}, {
		name:     "TestTriggerAfterProcessingTime(NotTriggered): 5s after the first element at pt 100 is not reached by pt 5099; all four come out at the end",
		tr:       trigger.AfterProcessingTime().PlusDelay(5 * time.Second),
		script:   "pt+=100 1,2,3@1000 pt+=4999 4@22000 end",
		want:     []string{"G {1 2 3 4} end last"},
		beamSums: []int{10},
	}, {
		// Processing time reaches first arrival + 5s exactly: the trigger
		// fires (as in prism; Java's isAfter would wait a millisecond). It
		// has finished, but on processing time, so the window stays open
		// and the 4 comes out at its end (prism keeps it too; Java would
		// drop it as arriving in a closed window).
		name:     "TestTriggerAfterProcessingTime: pt reaches first-arrival+5s (5100): 1, 2, 3 fire; the 4 comes out at the end",
		tr:       trigger.AfterProcessingTime().PlusDelay(5 * time.Second),
		script:   "pt+=100 1,2,3@1000 pt+=5000 4@22000 end",
		want:     []string{"G {1 2 3} pt 5100", "G {4} end last"},
		beamSums: []int{6, 4},
	}, {
		name:   "TestTriggerRepeat: Repeat(AfterCount(2)) fires three panes of two",
		tr:     trigger.Repeat(trigger.AfterCount(2)),
		script: "1,2,3@1000 wm=2000 4,5,6@6000 wm=10000 end",
		want: []string{
			"G {1 2} elem 2",
			"G {3 4} elem 4",
			"G {5 6} elem 6",
		},
		beamCount: 3,
	}, {
		name: "TestTriggerAfterEndOfWindow: early AfterCount(2) fires at the 2nd element, the 3rd comes out on time",
		tr: trigger.AfterEndOfWindow().
			EarlyFiring(trigger.AfterCount(2)).
			LateFiring(trigger.AfterCount(1)),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 end",
		want: []string{
			"[0s,10s) {1 2} elem 2",
			"[0s,10s) {3} wm 11000 last",
		},
		beamCount: 2,
	}, {
		name: "TestTriggerAfterAll: Repeat(AfterAll(Always, AfterCount(5))) fires once, at the 5th element",
		tr: trigger.Repeat(trigger.AfterAll([]trigger.Trigger{
			trigger.Always(),
			trigger.AfterCount(int32(5)),
		})),
		size:      fixed10s,
		script:    "1,2,3,5,8@1000 wm=11000 end",
		want:      []string{"[0s,10s) {1 2 3 5 8} elem 8"},
		beamCount: 1,
	}, {
		name: "TestTriggerAfterEach: Repeat(AfterEach(AfterCount(3), Always)) fires after 3, then for each element",
		tr: trigger.Repeat(trigger.AfterEach([]trigger.Trigger{
			trigger.AfterCount(int32(3)),
			trigger.Always(),
		})),
		script: "1,2,3,5,8@1000 wm=11000 end",
		want: []string{
			"G {1 2 3} elem 3",
			"G {5} elem 5",
			"G {8} elem 8",
		},
		beamCount: 3,
	}, {
		name: "TestTriggerAfterAny: Repeat(AfterAny(AfterCount(3), Always)) fires for every element",
		tr: trigger.Repeat(trigger.AfterAny([]trigger.Trigger{
			trigger.AfterCount(int32(3)),
			trigger.Always(),
		})),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 5,8@12000 end",
		want: []string{
			"[0s,10s) {1} elem 1",
			"[0s,10s) {2} elem 2",
			"[0s,10s) {3} elem 3",
			"[10s,20s) {5} elem 5",
			"[10s,20s) {8} elem 8",
		},
		beamCount: 5,
	}, {
		name:   "TestTriggerAfterSynchronizedProcessingTime: processing time never moves, so the panes come out at expiry",
		tr:     trigger.Repeat(trigger.AfterSynchronizedProcessingTime()),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 5,8@12000 end",
		want: []string{
			"[0s,10s) {1 2 3} wm 11000 last",
			"[10s,20s) {5 8} end last",
		},
		beamCount: 2,
	}, {
		name:   "TestTriggerNever: the panes come out at expiry",
		tr:     trigger.Never(),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 5,8@12000 end",
		want: []string{
			"[0s,10s) {1 2 3} wm 11000 last",
			"[10s,20s) {5 8} end last",
		},
		beamCount: 2,
	}, {
		name:   "TestTriggerOrFinally: OrFinally(Always, AfterCount(2)) fires each element until the 2nd, whose pane is the last",
		tr:     trigger.OrFinally(trigger.Always(), trigger.AfterCount(int32(2))),
		size:   fixed10s,
		script: "1,2,3@1000 wm=11000 5,8@12000 end",
		want: []string{
			"[0s,10s) {1} elem 1",
			"[0s,10s) {2} elem 2 last",
			"[10s,20s) {5} elem 5",
			"[10s,20s) {8} elem 8 last",
		},
		beamCount: 4,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(sdkTrigger(t, tc.tr))
			if err != nil {
				t.Fatal(err)
			}
			got := newDriver(t, m, tc.size).run(tc.script)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("%s over %q:\n got %q\nwant %q", m, tc.script, got, tc.want)
			}
			if tc.beamSums != nil && !reflect.DeepEqual(paneSums(got), tc.beamSums) {
				t.Errorf("pane sums %v, Beam's test wants %v", paneSums(got), tc.beamSums)
			}
			if tc.beamCount != 0 && len(got) != tc.beamCount {
				t.Errorf("%d panes, Beam's test wants %d", len(got), tc.beamCount)
			}
		})
	}
}

// TestBeamScenariosNeedElementGranularity shows why the caller must
// evaluate the trigger per element: delivering TestStream's bundles in one
// call each (as Java's ReduceFnRunner does per bundle) merges panes that
// Beam's Go tests expect separately.
func TestBeamScenariosNeedElementGranularity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tr     trigger.Trigger
		size   int64
		script string
		want   []string
	}{{
		name:   "Always: one pane for the bundle, not three",
		tr:     trigger.Always(),
		size:   10_000,
		script: "1,2,3@1000 wm=11000 end",
		want:   []string{"[0s,10s) {1 2 3} elem 3"},
	}, {
		name:   "OrFinally(Always, AfterCount(2)): two panes, not four",
		tr:     trigger.OrFinally(trigger.Always(), trigger.AfterCount(int32(2))),
		size:   10_000,
		script: "1,2,3@1000 wm=11000 5,8@12000 end",
		want:   []string{"[0s,10s) {1 2 3} elem 3 last", "[10s,20s) {5 8} elem 8 last"},
	}, {
		name:   "Repeat(AfterCount(2)): two panes of three, not three of two",
		tr:     trigger.Repeat(trigger.AfterCount(2)),
		script: "1,2,3@1000 wm=2000 4,5,6@6000 wm=10000 end",
		want:   []string{"G {1 2 3} elem 3", "G {4 5 6} elem 6"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(sdkTrigger(t, tc.tr))
			if err != nil {
				t.Fatal(err)
			}
			d := newDriver(t, m, tc.size)
			d.bundles = true
			if got := d.run(tc.script); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
