package engine

import (
	"testing"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// windowComps returns components where PCollection "pc" has the window fn
// urn with payload msg (nil: none).
func windowComps(t testing.TB, urn string, msg proto.Message) *pipepb.Components {
	t.Helper()
	var payload []byte
	if msg != nil {
		var err error
		if payload, err = proto.Marshal(msg); err != nil {
			t.Fatal(err)
		}
	}
	return &pipepb.Components{
		Pcollections: map[string]*pipepb.PCollection{"pc": {WindowingStrategyId: "ws"}},
		WindowingStrategies: map[string]*pipepb.WindowingStrategy{"ws": {
			WindowFn: &pipepb.FunctionSpec{Urn: urn, Payload: payload}}},
	}
}

func fixed(size, offset int64) proto.Message {
	return &pipepb.FixedWindowsPayload{Size: durationpb.New(time.Duration(size) * time.Millisecond),
		Offset: timestamppb.New(time.UnixMilli(offset))}
}

func sliding(size, period, offset int64) proto.Message {
	return &pipepb.SlidingWindowsPayload{Size: durationpb.New(time.Duration(size) * time.Millisecond),
		Period: durationpb.New(time.Duration(period) * time.Millisecond), Offset: timestamppb.New(time.UnixMilli(offset))}
}

func TestSideWindowMapping(t *testing.T) {
	eog := wire.EndOfGlobalWindow
	tests := []struct {
		name    string
		urn     string
		payload proto.Message
		main    int64 // max timestamp of the main window
		want    int64 // max timestamp of the side window
	}{
		{"global", plan.URNGlobalWindows, nil, 5, eog},
		{"global from the global window", plan.URNGlobalWindows, nil, eog, eog},
		{"fixed: start of a window", plan.URNFixedWindows, fixed(10, 0), 0, 9},
		{"fixed: middle", plan.URNFixedWindows, fixed(10, 0), 5, 9},
		{"fixed: max timestamp", plan.URNFixedWindows, fixed(10, 0), 9, 9},
		{"fixed: next window", plan.URNFixedWindows, fixed(10, 0), 10, 19},
		{"fixed: negative time", plan.URNFixedWindows, fixed(10, 0), -1, -1},
		{"fixed: negative time, window start", plan.URNFixedWindows, fixed(10, 0), -10, -1},
		{"fixed: before zero", plan.URNFixedWindows, fixed(10, 0), -11, -11},
		{"fixed with offset", plan.URNFixedWindows, fixed(10, 3), 12, 12},
		{"fixed with offset, next", plan.URNFixedWindows, fixed(10, 3), 13, 22},
		{"fixed: bigger main window", plan.URNFixedWindows, fixed(60000, 0), 119999, 119999},
		{"fixed: from the global window", plan.URNFixedWindows, fixed(10, 0), eog, eog},
		{"fixed: near the end saturates", plan.URNFixedWindows, fixed(1000, 0), eog - 1, eog},
		{"sliding: latest-ending window", plan.URNSlidingWindows, sliding(20, 10, 0), 5, 19},
		{"sliding: at a period start", plan.URNSlidingWindows, sliding(20, 10, 0), 10, 29},
		{"sliding: period end", plan.URNSlidingWindows, sliding(20, 10, 0), 9, 19},
		{"sliding with offset", plan.URNSlidingWindows, sliding(30, 10, 5), 4, 24},
		{"sliding: negative", plan.URNSlidingWindows, sliding(20, 10, 0), -5, 9},
		{"sliding: period equals size is fixed", plan.URNSlidingWindows, sliding(10, 10, 0), 15, 19},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fn, err := sideWindowMapping(windowComps(t, tc.urn, tc.payload), "pc")
			if err != nil {
				t.Fatal(err)
			}
			if fn == nil {
				t.Fatal("no mapping")
			}
			if got := fn(tc.main); got != tc.want {
				t.Errorf("side window of main max timestamp %d: max timestamp %d, want %d", tc.main, got, tc.want)
			}
		})
	}
}

func TestSideWindowMappingUnknown(t *testing.T) {
	// Windows the runner cannot map: the side input is ready at its end.
	for name, comps := range map[string]*pipepb.Components{
		"sessions":       windowComps(t, plan.URNSessions, nil),
		"custom":         windowComps(t, "beam:window_fn:custom:v1", nil),
		"no pcollection": {},
		"no strategy":    {Pcollections: map[string]*pipepb.PCollection{"pc": {WindowingStrategyId: "none"}}},
	} {
		fn, err := sideWindowMapping(comps, "pc")
		if err != nil || fn != nil {
			t.Errorf("%s: mapping %v, %v; want none", name, fn != nil, err)
		}
	}
	for name, comps := range map[string]*pipepb.Components{
		"fixed of size 0":  windowComps(t, plan.URNFixedWindows, fixed(0, 0)),
		"sliding period 0": windowComps(t, plan.URNSlidingWindows, sliding(10, 0, 0)),
		"corrupt payload":  {Pcollections: map[string]*pipepb.PCollection{"pc": {WindowingStrategyId: "ws"}}, WindowingStrategies: map[string]*pipepb.WindowingStrategy{"ws": {WindowFn: &pipepb.FunctionSpec{Urn: plan.URNFixedWindows, Payload: []byte{0xff}}}}},
	} {
		if _, err := sideWindowMapping(comps, "pc"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
