package engine

import (
	"fmt"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// sideWindowFn maps the max timestamp of a main input window to the max
// timestamp of the side input window it reads: Beam's default window
// mapping, the side window containing the main window's max timestamp.
// nil means the runner cannot tell, and the side input is ready only once
// it has ended.
type sideWindowFn func(mainMaxTs int64) int64

// sideWindowMapping returns the window mapping of side input PCollection
// pcoll, from its windowing strategy: global, fixed and sliding windows
// are mapped (for sliding windows, conservatively, to the latest-ending
// window that contains the timestamp); anything else is nil.
func sideWindowMapping(comps *pipepb.Components, pcoll string) (sideWindowFn, error) {
	pc, ok := comps.GetPcollections()[pcoll]
	if !ok {
		return nil, nil
	}
	ws, ok := comps.GetWindowingStrategies()[pc.GetWindowingStrategyId()]
	if !ok {
		return nil, nil
	}
	fn := ws.GetWindowFn()
	switch fn.GetUrn() {
	case plan.URNGlobalWindows:
		return func(int64) int64 { return wire.EndOfGlobalWindow }, nil
	case plan.URNFixedWindows:
		p := &pipepb.FixedWindowsPayload{}
		if err := proto.Unmarshal(fn.GetPayload(), p); err != nil {
			return nil, fmt.Errorf("fixed windows of side input %s: %w", pcoll, err)
		}
		size, offset := p.GetSize().AsDuration().Milliseconds(), p.GetOffset().AsTime().UnixMilli()
		if size <= 0 {
			return nil, fmt.Errorf("fixed windows of side input %s: size %d ms", pcoll, size)
		}
		return func(ts int64) int64 { return lastWindowMax(ts, size, size, offset) }, nil
	case plan.URNSlidingWindows:
		p := &pipepb.SlidingWindowsPayload{}
		if err := proto.Unmarshal(fn.GetPayload(), p); err != nil {
			return nil, fmt.Errorf("sliding windows of side input %s: %w", pcoll, err)
		}
		size, period := p.GetSize().AsDuration().Milliseconds(), p.GetPeriod().AsDuration().Milliseconds()
		offset := p.GetOffset().AsTime().UnixMilli()
		if size <= 0 || period <= 0 {
			return nil, fmt.Errorf("sliding windows of side input %s: size %d ms, period %d ms", pcoll, size, period)
		}
		return func(ts int64) int64 { return lastWindowMax(ts, size, period, offset) }, nil
	}
	return nil, nil
}

// lastWindowMax is the max timestamp of the latest-ending window of size
// size, starting every period after offset, that contains ts (for fixed
// windows, period is size: the one window containing ts). It saturates at
// the end of the global window, past which no window ends.
func lastWindowMax(ts, size, period, offset int64) int64 {
	if ts >= wire.EndOfGlobalWindow {
		return wire.EndOfGlobalWindow
	}
	start := ts - mod(ts-offset, period)
	if start > wire.EndOfGlobalWindow-size {
		return wire.EndOfGlobalWindow
	}
	return start + size - 1
}

func mod(a, m int64) int64 {
	r := a % m
	if r < 0 {
		r += m
	}
	return r
}
