package trigger

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window/trigger"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// Proto builders, so that tables read like the trigger.

func def() *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_Default_{Default: &pipepb.Trigger_Default{}}}
}
func always() *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_Always_{Always: &pipepb.Trigger_Always{}}}
}
func never() *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_Never_{Never: &pipepb.Trigger_Never{}}}
}
func count(n int32) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_ElementCount_{ElementCount: &pipepb.Trigger_ElementCount{ElementCount: n}}}
}
func endOfWindow(early, late *pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterEndOfWindow_{AfterEndOfWindow: &pipepb.Trigger_AfterEndOfWindow{EarlyFirings: early, LateFirings: late}}}
}
func procTime(tts ...*pipepb.TimestampTransform) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterProcessingTime_{AfterProcessingTime: &pipepb.Trigger_AfterProcessingTime{TimestampTransforms: tts}}}
}
func syncTime() *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterSynchronizedProcessingTime_{AfterSynchronizedProcessingTime: &pipepb.Trigger_AfterSynchronizedProcessingTime{}}}
}
func delay(ms int64) *pipepb.TimestampTransform {
	return &pipepb.TimestampTransform{TimestampTransform: &pipepb.TimestampTransform_Delay_{Delay: &pipepb.TimestampTransform_Delay{DelayMillis: ms}}}
}
func align(period, offset int64) *pipepb.TimestampTransform {
	return &pipepb.TimestampTransform{TimestampTransform: &pipepb.TimestampTransform_AlignTo_{AlignTo: &pipepb.TimestampTransform_AlignTo{Period: period, Offset: offset}}}
}
func all(ts ...*pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterAll_{AfterAll: &pipepb.Trigger_AfterAll{Subtriggers: ts}}}
}
func anyOf(ts ...*pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterAny_{AfterAny: &pipepb.Trigger_AfterAny{Subtriggers: ts}}}
}
func each(ts ...*pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterEach_{AfterEach: &pipepb.Trigger_AfterEach{Subtriggers: ts}}}
}
func repeat(t *pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_Repeat_{Repeat: &pipepb.Trigger_Repeat{Subtrigger: t}}}
}
func orFinally(main, fin *pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_OrFinally_{OrFinally: &pipepb.Trigger_OrFinally{Main: main, Finally: fin}}}
}

// scenario is one table row: a trigger, windows, allowed lateness and a
// driver script (see driver), with every pane it must emit written out.
type scenario struct {
	name     string
	tr       *pipepb.Trigger
	size     int64 // fixed window size in ms; 0: the global window
	lateness int64
	bundles  bool // deliver each bundle in one OnEvent call
	script   string
	want     []string
	dropped  int // elements dropped for closed or expired windows
}

func runScenarios(t *testing.T, cases []scenario) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.tr)
			if err != nil {
				t.Fatal(err)
			}
			d := newDriver(t, m, tc.size)
			d.lateness, d.bundles = tc.lateness, tc.bundles
			got := d.run(tc.script)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("%s over %q:\n got %q\nwant %q", m, tc.script, got, tc.want)
			}
			if d.dropped != tc.dropped {
				t.Errorf("dropped %d elements, want %d", d.dropped, tc.dropped)
			}
		})
	}
}

const s10 = 10_000 // fixed 10s windows: [0s,10s) ends at max timestamp 9999

func TestDefault(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "3 elements then watermark past end → one pane at the end",
		tr:     def(),
		size:   s10,
		script: "1,2,3@1000 wm=11000",
		want:   []string{"[0s,10s) {1 2 3} wm 11000 last"},
	}, {
		name:     "watermark at the window's max timestamp is not past it; one more millisecond is",
		tr:       def(),
		size:     s10,
		lateness: 1000,
		script:   "1@1000 wm=9999 wm=10000",
		want:     []string{"[0s,10s) {1} wm 10000"},
	}, {
		name:     "with allowed lateness: on time, then a pane per late element, then late data past the lateness is dropped",
		tr:       def(),
		size:     s10,
		lateness: 5000,
		script:   "1,2@1000 wm=10000 3@2000 4@3000 wm=16000 5@4000",
		want: []string{
			"[0s,10s) {1 2} wm 10000",
			"[0s,10s) {3} elem 3",
			"[0s,10s) {4} elem 4",
		},
		dropped: 1,
	}, {
		name:   "a nil trigger is the default trigger",
		tr:     nil,
		size:   s10,
		script: "1@1 end",
		want:   []string{"[0s,10s) {1} end last"},
	}})
}

func TestAlways(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "every element fires its own pane",
		tr:     always(),
		script: "1@1 2@2 3@3",
		want:   []string{"G {1} elem 1", "G {2} elem 2", "G {3} elem 3"},
	}, {
		name:    "a bundle delivered in one call fires one pane",
		tr:      always(),
		bundles: true,
		script:  "1,2,3@1",
		want:    []string{"G {1 2 3} elem 3"},
	}, {
		name:   "the watermark passing the end with nothing new fires nothing; expiry finds the window empty",
		tr:     always(),
		size:   s10,
		script: "1@1 wm=20000",
		want:   []string{"[0s,10s) {1} elem 1"},
	}})
}

func TestNever(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "never fires; the elements come out when the window expires",
		tr:     never(),
		size:   s10,
		script: "1,2@1000 wm=20000",
		want:   []string{"[0s,10s) {1 2} wm 20000 last"},
	}, {
		name:     "with allowed lateness it stays silent at the end of the window, too",
		tr:       never(),
		size:     s10,
		lateness: 5000,
		script:   "1@1000 wm=10000 2@2000 wm=15000",
		want:     []string{"[0s,10s) {1 2} wm 15000 last"},
	}})
}

func TestElementCount(t *testing.T) {
	runScenarios(t, []scenario{{
		name:    "4 elements → fires at element 3 and finishes; element 4 is dropped",
		tr:      count(3),
		script:  "1,2,3,4@1 end",
		want:    []string{"G {1 2 3} elem 3 last"},
		dropped: 1,
	}, {
		name:   "2 elements → never fires; they come out when the window expires",
		tr:     count(3),
		size:   s10,
		script: "1,2@1 wm=10000",
		want:   []string{"[0s,10s) {1 2} wm 10000 last"},
	}, {
		name:    "a bundle of 5 delivered at once fires one pane of 5",
		tr:      count(3),
		bundles: true,
		script:  "1,2,3,4,5@1",
		want:    []string{"G {1 2 3 4 5} elem 5 last"},
	}, {
		name:    "counts per window",
		tr:      count(2),
		size:    s10,
		script:  "1@1000 2@11000 3@2000 4@12000 5@3000",
		want:    []string{"[0s,10s) {1 3} elem 3 last", "[10s,20s) {2 4} elem 4 last"},
		dropped: 1,
	}})
}

func TestAfterEndOfWindow(t *testing.T) {
	runScenarios(t, []scenario{{
		name:     "no early or late firings: fires once when the watermark passes the end and finishes; late data is dropped",
		tr:       endOfWindow(nil, nil),
		size:     s10,
		lateness: 5000,
		script:   "1@1000 wm=10000 2@2000",
		want:     []string{"[0s,10s) {1} wm 10000 last"},
		dropped:  1,
	}, {
		name:   "early ElementCount(2) repeats: early panes every 2 elements, then the rest on time",
		tr:     endOfWindow(count(2), nil),
		size:   s10,
		script: "1,2,3,4,5@1000 wm=10000",
		want: []string{
			"[0s,10s) {1 2} elem 2",
			"[0s,10s) {3 4} elem 4",
			"[0s,10s) {5} wm 10000 last",
		},
	}, {
		name:   "early firings took everything: the on-time pane is empty and not emitted",
		tr:     endOfWindow(count(2), nil),
		size:   s10,
		script: "1,2@1000 wm=10000",
		want:   []string{"[0s,10s) {1 2} elem 2"},
	}, {
		name:     "late Always: on time, then a pane per late element until expiry",
		tr:       endOfWindow(nil, always()),
		size:     s10,
		lateness: 10_000,
		script:   "1@1000 wm=10000 2@2000 3@3000 wm=20000 4@4000",
		want: []string{
			"[0s,10s) {1} wm 10000",
			"[0s,10s) {2} elem 2",
			"[0s,10s) {3} elem 3",
		},
		dropped: 1,
	}, {
		name:     "early after 1s of processing time, late every 2 elements (both implicitly repeated)",
		tr:       endOfWindow(procTime(delay(1000)), count(2)),
		size:     s10,
		lateness: 10_000,
		script:   "1@1000 pt+=500 2@2000 pt+=600 3@3000 wm=10000 4@4000 5@5000 6@6000 end",
		want: []string{
			"[0s,10s) {1 2} pt 1100",
			"[0s,10s) {3} wm 10000",
			"[0s,10s) {4 5} elem 5",
			"[0s,10s) {6} end last",
		},
	}, {
		name:     "early elements do not count towards the late trigger: it starts clean after the on-time pane",
		tr:       endOfWindow(never(), count(2)),
		size:     s10,
		lateness: 10_000,
		script:   "1,2,3@1000 wm=10000 4@4000 5@5000",
		want: []string{
			"[0s,10s) {1 2 3} wm 10000",
			"[0s,10s) {4 5} elem 5",
		},
	}})
}

// TestAfterEndOfWindowGoSDK runs the proto the Go SDK makes for
// AfterEndOfWindow(), whose early firings default to the Default trigger:
// that can only be ready once the watermark has passed the end, so it
// never fires early.
func TestAfterEndOfWindowGoSDK(t *testing.T) {
	tr := sdkTrigger(t, trigger.AfterEndOfWindow())
	if tr.GetAfterEndOfWindow().GetEarlyFirings().GetDefault() == nil {
		t.Fatalf("the Go SDK's AfterEndOfWindow() is %v; expected early firings Default", tr)
	}
	runScenarios(t, []scenario{{
		name:     "early Default never fires early; the window finishes on time",
		tr:       tr,
		size:     s10,
		lateness: 5000,
		script:   "1,2@1000 wm=10000 3@3000",
		want:     []string{"[0s,10s) {1 2} wm 10000 last"},
		dropped:  1,
	}})
}

func TestAfterProcessingTime(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "+5s: fires once the clock reaches first arrival + 5s (Java: a millisecond later) and finishes, leaving the window open: a later element comes out at the end",
		tr:     procTime(delay(5000)),
		script: "1@1 pt+=2000 2@2 pt+=2999 pt+=1 3@3 end",
		want:   []string{"G {1 2} pt 5000", "G {3} end last"},
	}, {
		name:   "the delay runs from the first element of the pane, not the last",
		tr:     repeat(procTime(delay(1000))),
		script: "1@1 pt+=500 2@2 pt+=500 3@3 pt+=999 4@4 pt+=1",
		want:   []string{"G {1 2} pt 1000", "G {3 4} pt 2000"},
	}, {
		name:   "delay then align to a 1s grid: arrival 300 + 500 → 1000",
		tr:     procTime(delay(500), align(1000, 0)),
		script: "pt+=300 1@1 pt+=699 pt+=1",
		want:   []string{"G {1} pt 1000"},
	}, {
		name:   "align to a 1s grid offset by 250ms: arrival 300 → 1250",
		tr:     procTime(align(1000, 250)),
		script: "pt+=300 1@1 pt+=949 pt+=1",
		want:   []string{"G {1} pt 1250"},
	}, {
		name:   "an arrival already on the grid is its own target: it fires at once",
		tr:     procTime(align(1000, 0)),
		script: "pt+=2000 1@1 pt+=1",
		want:   []string{"G {1} elem 1"},
	}, {
		name:    "a processing-time firing leaves the window open until its end, then later data is dropped as usual",
		tr:      procTime(delay(1000)),
		size:    s10,
		script:  "1@1 pt+=1000 2@2 3@3 wm=10000 4@4",
		want:    []string{"[0s,10s) {1} pt 1000", "[0s,10s) {2 3} wm 10000 last"},
		dropped: 1,
	}, {
		name:     "with allowed lateness, an open window's elements come out on time at its end, the late ones at expiry",
		tr:       procTime(delay(1000)),
		size:     s10,
		lateness: 5000,
		script:   "1@1 pt+=1000 2@2 wm=10000 3@3 4@4 wm=15000 5@5",
		want:     []string{"[0s,10s) {1} pt 1000", "[0s,10s) {2} wm 10000", "[0s,10s) {3 4} wm 15000 last"},
		dropped:  1,
	}, {
		name:    "an ElementCount that finishes still closes the window",
		tr:      anyOf(count(2), procTime(delay(1000))),
		script:  "1@1 pt+=500 2@2 pt+=500 3@3 end",
		want:    []string{"G {1 2} elem 2 last"},
		dropped: 1,
	}, {
		name:   "no processing time passes: the pane comes out at expiry",
		tr:     procTime(delay(1)),
		size:   s10,
		script: "1@1 wm=10000",
		want:   []string{"[0s,10s) {1} wm 10000 last"},
	}, {
		name:   "AfterSynchronizedProcessingTime is processing time with no delay: fires once the clock moves past the arrival",
		tr:     repeat(syncTime()),
		script: "1,2@1 pt+=1 3@3 pt+=1",
		want:   []string{"G {1 2} pt 1", "G {3} pt 2"},
	}})
}

func TestAfterAll(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "2 elements and then 1s → fires when the second condition is met, and finishes; a processing-time firing leaves the window open",
		tr:     all(count(2), procTime(delay(1000))),
		script: "1@1 2@2 pt+=1001 3@3 end",
		want:   []string{"G {1 2} pt 1001", "G {3} end last"},
	}, {
		name:   "1s and then 2 elements → fires at the element, still a processing-time firing (without the time it would not fire)",
		tr:     all(count(2), procTime(delay(1000))),
		script: "1@1 pt+=1001 2@2 3@3 end",
		want:   []string{"G {1 2} elem 2", "G {3} end last"},
	}, {
		name:   "a subtrigger that is done waits, ready, for the others (Repeat resets them all)",
		tr:     repeat(all(count(1), count(3))),
		script: "1,2,3,4,5,6@1",
		want:   []string{"G {1 2 3} elem 3", "G {4 5 6} elem 6"},
	}})
}

func TestAfterAny(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "whichever comes first: 1s passes before the 3rd element (which the open window keeps for its end)",
		tr:     anyOf(count(3), procTime(delay(1000))),
		script: "1@1 2@2 pt+=1001 3@3 end",
		want:   []string{"G {1 2} pt 1001", "G {3} end last"},
	}, {
		name:    "whichever comes first: the 3rd element before 1s passes (the window is closed)",
		tr:      anyOf(count(3), procTime(delay(1000))),
		script:  "1@1 2@2 pt+=999 3@3 pt+=1 4@4 end",
		want:    []string{"G {1 2 3} elem 3 last"},
		dropped: 1,
	}, {
		name:   "repeated: after a time firing the count restarts, and vice versa",
		tr:     repeat(anyOf(count(3), procTime(delay(1000)))),
		script: "1,2@1 pt+=1001 3,4@2 5@3 6@4 pt+=999 pt+=2",
		want:   []string{"G {1 2} pt 1001", "G {3 4 5} elem 5", "G {6} pt 2002"},
	}})
}

func TestAfterEach(t *testing.T) {
	runScenarios(t, []scenario{{
		name:    "ElementCount(2) then ElementCount(3): fires at element 2 and 5, then finishes",
		tr:      each(count(2), count(3)),
		script:  "1,2,3,4,5,6@1",
		want:    []string{"G {1 2} elem 2", "G {3 4 5} elem 5 last"},
		dropped: 1,
	}, {
		name:   "the next subtrigger starts when it becomes current: its delay runs from the first element after",
		tr:     each(count(2), procTime(delay(1000))),
		script: "1,2@1 pt+=500 3@3 pt+=999 pt+=1",
		want:   []string{"G {1 2} elem 2", "G {3} pt 1500"},
	}, {
		name:   "a subtrigger that never finishes (Repeat) keeps AfterEach on it",
		tr:     each(repeat(count(1)), count(2)),
		script: "1@1 2@2 3@3",
		want:   []string{"G {1} elem 1", "G {2} elem 2", "G {3} elem 3"},
	}})
}

func TestRepeat(t *testing.T) {
	runScenarios(t, []scenario{{
		name:   "Repeat(ElementCount(2)): a pane every 2 elements; the odd one out at expiry",
		tr:     repeat(count(2)),
		size:   s10,
		script: "1,2,3,4,5@1 wm=10000",
		want: []string{
			"[0s,10s) {1 2} elem 2",
			"[0s,10s) {3 4} elem 4",
			"[0s,10s) {5} wm 10000 last",
		},
	}, {
		name:    "with a bundle of 3 the count restarts at 0 after firing, not at 1",
		tr:      repeat(count(2)),
		bundles: true,
		script:  "1,2,3@1 4@2 5@3",
		want:    []string{"G {1 2 3} elem 3", "G {4 5} elem 5"},
	}, {
		name:     "Repeat(AfterEndOfWindow) behaves like the default trigger",
		tr:       repeat(endOfWindow(nil, nil)),
		size:     s10,
		lateness: 5000,
		script:   "1@1 wm=10000 2@2 3@3",
		want:     []string{"[0s,10s) {1} wm 10000", "[0s,10s) {2} elem 2", "[0s,10s) {3} elem 3"},
	}})
}

func TestOrFinally(t *testing.T) {
	runScenarios(t, []scenario{{
		name:    "the finally trigger's firing emits a pane, the last one",
		tr:      orFinally(never(), count(2)),
		script:  "1,2,3@1",
		want:    []string{"G {1 2} elem 2 last"},
		dropped: 1,
	}, {
		name:   "main fires every 2 elements until 1s after the first element, which finishes the trigger; processing time leaves the window open",
		tr:     orFinally(repeat(count(2)), procTime(delay(1000))),
		script: "1,2,3@1 pt+=1000 4,5,6@2 end",
		want:   []string{"G {1 2} elem 2", "G {3} pt 1000", "G {4 5 6} end last"},
	}, {
		name:    "the finally trigger counts across the main trigger's firings",
		tr:      orFinally(always(), count(3)),
		script:  "1@1 2@2 3@3 4@4",
		want:    []string{"G {1} elem 1", "G {2} elem 2", "G {3} elem 3 last"},
		dropped: 1,
	}, {
		name:    "a main trigger that finishes finishes the whole",
		tr:      orFinally(count(2), never()),
		script:  "1,2,3@1",
		want:    []string{"G {1 2} elem 2 last"},
		dropped: 1,
	}, {
		name:    "a finally trigger that never finishes by itself (Always) still ends the window when it fires",
		tr:      orFinally(repeat(count(2)), always()),
		script:  "1@1 2@2",
		want:    []string{"G {1} elem 1 last"},
		dropped: 1,
	}, {
		name:   "under Repeat, the finally trigger ends one round and the next begins",
		tr:     repeat(orFinally(always(), count(2))),
		script: "1@1 2@2 3@3 4@4",
		want:   []string{"G {1} elem 1", "G {2} elem 2", "G {3} elem 3", "G {4} elem 4"},
	}})
}

// TestOnEvent checks OnEvent's three results call by call.
func TestOnEvent(t *testing.T) {
	type step struct {
		in       Input
		fire     bool
		finished bool
		wake     int64
	}
	const end = 9999
	for _, tc := range []struct {
		name  string
		tr    *pipepb.Trigger
		steps []step
	}{{
		name: "AfterProcessingTime(+5s): wake at arrival+5s",
		tr:   procTime(delay(5000)),
		steps: []step{
			{in: Input{Elements: 1, ProcessingTime: 100, WindowEnd: end}, wake: 5100},
			{in: Input{Elements: 1, ProcessingTime: 200, WindowEnd: end}, wake: 5100},
			{in: Input{ProcessingTime: 5099, WindowEnd: end}, wake: 5100},
			{in: Input{ProcessingTime: 5100, WindowEnd: end}, fire: true, finished: true},
			{in: Input{Elements: 1, ProcessingTime: 6000, WindowEnd: end}, finished: true},
		},
	}, {
		name: "AfterSynchronizedProcessingTime: wake a millisecond after the arrival",
		tr:   syncTime(),
		steps: []step{
			{in: Input{Elements: 1, ProcessingTime: 100, WindowEnd: end}, wake: 101},
			{in: Input{Elements: 1, ProcessingTime: 100, WindowEnd: end}, wake: 101},
			{in: Input{ProcessingTime: 101, WindowEnd: end}, fire: true, finished: true},
		},
	}, {
		name: "Default: fires whenever asked once the watermark is past the end; never finishes; never wakes",
		tr:   def(),
		steps: []step{
			{in: Input{Elements: 1, Watermark: 5000, WindowEnd: end}},
			{in: Input{Watermark: end, WindowEnd: end}},
			{in: Input{Watermark: end + 1, WindowEnd: end}, fire: true},
			{in: Input{Elements: 1, Watermark: end + 1, WindowEnd: end}, fire: true},
		},
	}, {
		name: "Repeat(AfterAny(ElementCount(2), +1s)): a count firing drops the pending time target",
		tr:   repeat(anyOf(count(2), procTime(delay(1000)))),
		steps: []step{
			{in: Input{Elements: 1, ProcessingTime: 0, WindowEnd: end}, wake: 1000},
			{in: Input{Elements: 1, ProcessingTime: 10, WindowEnd: end}, fire: true},
			{in: Input{ProcessingTime: 1000, WindowEnd: end}},
			{in: Input{Elements: 1, ProcessingTime: 1500, WindowEnd: end}, wake: 2500},
		},
	}, {
		name: "AfterAll(+1s, +2s): the earlier target passes and stops waking; the later one remains",
		tr:   all(procTime(delay(1000)), procTime(delay(2000))),
		steps: []step{
			{in: Input{Elements: 1, ProcessingTime: 0, WindowEnd: end}, wake: 1000},
			{in: Input{ProcessingTime: 1000, WindowEnd: end}, wake: 2000},
			{in: Input{ProcessingTime: 2000, WindowEnd: end}, fire: true, finished: true},
		},
	}, {
		name: "Elements counts several elements in one call",
		tr:   count(3),
		steps: []step{
			{in: Input{Elements: 2, WindowEnd: end}},
			{in: Input{Elements: 5, WindowEnd: end}, fire: true, finished: true},
		},
	}, {
		name: "a target at the end of time never wakes",
		tr:   procTime(delay(math.MaxInt64)),
		steps: []step{
			{in: Input{Elements: 1, ProcessingTime: 1, WindowEnd: end}},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.tr)
			if err != nil {
				t.Fatal(err)
			}
			var s State
			for i, st := range tc.steps {
				fire, fin, wake := m.OnEvent(&s, st.in)
				if fire != st.fire || fin != st.finished || wake != st.wake {
					t.Fatalf("step %d %+v: got fire=%v finished=%v wake=%d, want %v %v %d",
						i, st.in, fire, fin, wake, st.fire, st.finished, st.wake)
				}
			}
		})
	}
}

func TestSupported(t *testing.T) {
	deep := count(1)
	for range maxDepth + 1 {
		deep = repeat(deep)
	}
	wide := make([]*pipepb.Trigger, maxNodes)
	for i := range wide {
		wide[i] = never()
	}
	for _, tc := range []struct {
		tr   *pipepb.Trigger
		want string // "" for supported; else a substring of the error
	}{
		{tr: nil},
		{tr: &pipepb.Trigger{}},
		{tr: def()},
		{tr: endOfWindow(nil, nil)},
		{tr: endOfWindow(&pipepb.Trigger{}, &pipepb.Trigger{})},
		{tr: procTime()},
		{tr: orFinally(repeat(anyOf(count(2), procTime(delay(1), align(10, -3)))), each(syncTime(), never()))},
		{tr: count(0), want: "trigger ElementCount: element_count must be at least 1, got 0"},
		{tr: repeat(all(always(), count(-1))), want: "trigger Repeat/AfterAll[1]/ElementCount: element_count must be at least 1"},
		{tr: all(), want: "trigger AfterAll: no subtriggers"},
		{tr: anyOf(), want: "trigger AfterAny: no subtriggers"},
		{tr: each(count(1), each()), want: "trigger AfterEach[1]/AfterEach: no subtriggers"},
		{tr: repeat(nil), want: "trigger Repeat/(empty): no trigger type set"},
		{tr: orFinally(always(), nil), want: "trigger OrFinally.finally/(empty): no trigger type set"},
		{tr: endOfWindow(count(1), count(0)), want: "trigger AfterEndOfWindow.late/ElementCount: element_count must be at least 1"},
		{tr: procTime(delay(-1)), want: "trigger AfterProcessingTime: timestamp_transforms[0]: negative delay"},
		{tr: procTime(delay(1), align(0, 0)), want: "trigger AfterProcessingTime: timestamp_transforms[1]: align_to period must be positive"},
		{tr: procTime(&pipepb.TimestampTransform{}), want: "trigger AfterProcessingTime: timestamp_transforms[0]: no transform type set"},
		{tr: deep, want: "nested more than 32 deep"},
		{tr: anyOf(wide...), want: "trigger AfterAny[1023]/Never: the trigger has more than 1024 parts"},
	} {
		err := Supported(tc.tr)
		_, nerr := New(tc.tr)
		if (err == nil) != (nerr == nil) {
			t.Errorf("Supported(%v) = %v but New's error is %v", tc.tr, err, nerr)
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Supported(%v) = %v, want nil", tc.tr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Supported(%v) = %v, want an error containing %q", tc.tr, err, tc.want)
		}
	}
}

func TestString(t *testing.T) {
	for _, tc := range []struct {
		tr   *pipepb.Trigger
		want string
	}{
		{nil, "Default"},
		{repeat(all(always(), count(5))), "Repeat(AfterAll(Always, ElementCount(5)))"},
		{endOfWindow(count(2), always()), "AfterEndOfWindow(early: ElementCount(2), late: Always)"},
		{endOfWindow(nil, never()), "AfterEndOfWindow(late: Never)"},
		{orFinally(procTime(delay(5000), align(1000, 0)), syncTime()), "OrFinally(AfterProcessingTime(+5000ms, align 1000ms+0ms), AfterSynchronizedProcessingTime)"},
		{sdkTrigger(t, trigger.AfterProcessingTime().PlusDelay(5*time.Second)), "AfterProcessingTime(+5000ms)"},
	} {
		m, err := New(tc.tr)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
