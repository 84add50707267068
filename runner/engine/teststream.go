package engine

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"
	"weak"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// testStreamTask replays a TestStream: elements in the global window with
// their timestamps, and watermark advances, in the order the test wrote
// them. Every consumer sees each element before the watermark that
// follows it, because both travel in band.
//
// Processing-time advances drive a synthetic processing time (a tsClock),
// which the triggered GroupByKeys that follow the TestStream use instead
// of the wall clock, as prism does. Like prism, which runs a TestStream's
// next event only once the pipeline is idle, the replay waits at each
// advance until those GroupByKeys have taken in everything sent before
// it, and until they have acted on it before it goes on.
type testStreamTask struct{ subtask }

func (t *testStreamTask) run(ctx context.Context) error {
	payload, err := testStreamPayload(t.e.plan, t.stage)
	if err != nil {
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	wrap, err := t.lengthPrefixed()
	if err != nil {
		return err
	}
	var clock *tsClock
	var pt int64
	if advancesProcessingTime(payload) {
		clock = clockOf(t.stage, t.e.now())
		pt = clock.start
	}
	wm := wire.MinTimestamp
	var sent int64 // elements sent on each output
	for _, ev := range payload.GetEvents() {
		select {
		case <-t.e.drain:
			return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
		default:
		}
		// The pipeline has done all the previous event caused.
		if err := t.e.quiet.wait(ctx); err != nil {
			return err
		}
		switch e := ev.GetEvent().(type) {
		case *pipepb.TestStreamPayload_Event_ElementEvent:
			var data []byte
			for _, el := range e.ElementEvent.GetElements() {
				v := el.GetEncodedElement()
				if wrap {
					v = append(wire.AppendVarint(nil, uint64(len(v))), v...)
				}
				data = wire.AppendWindowedValue(data, el.GetTimestamp(), [][]byte{wire.GlobalWindow()}, wire.PaneNoFiring, v)
			}
			for _, pc := range t.stage.Outputs {
				if err := t.out.emit(ctx, pc, data); err != nil {
					return err
				}
			}
			sent += int64(len(e.ElementEvent.GetElements()))
		case *pipepb.TestStreamPayload_Event_WatermarkEvent:
			next := e.WatermarkEvent.GetNewWatermark()
			if next >= wire.MaxTimestamp {
				return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
			}
			if next > wm {
				wm = next
				if err := t.out.control(ctx, msgWatermark, wm); err != nil {
					return err
				}
			}
		case *pipepb.TestStreamPayload_Event_ProcessingTimeEvent:
			d := e.ProcessingTimeEvent.GetAdvanceDuration()
			if d <= 0 {
				continue
			}
			pt += min(d, wire.MaxTimestamp-pt) // AdvanceProcessingTimeToInfinity stops at +inf
			if err := clock.advance(ctx, t.e, sent, pt); err != nil {
				return err
			}
		}
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
}

// testStreamPayload decodes the payload of TestStream stage s.
func testStreamPayload(p *plan.Plan, s *plan.Stage) (*pipepb.TestStreamPayload, error) {
	tr := p.Components.GetTransforms()[s.Transforms[0]]
	payload := &pipepb.TestStreamPayload{}
	if err := proto.Unmarshal(tr.GetSpec().GetPayload(), payload); err != nil {
		return nil, fmt.Errorf("decoding TestStream payload: %w", err)
	}
	return payload, nil
}

// advancesProcessingTime reports whether a TestStream advances processing
// time.
func advancesProcessingTime(p *pipepb.TestStreamPayload) bool {
	for _, ev := range p.GetEvents() {
		if ev.GetProcessingTimeEvent().GetAdvanceDuration() > 0 {
			return true
		}
	}
	return false
}

// tsClock is the synthetic processing time of a TestStream that advances
// processing time, in milliseconds. It starts at the wall clock's reading
// when it is made, and moves only when the TestStream says so.
//
// It is kept for the triggered GroupByKeys downstream that follow it: a
// GroupByKey whose input the TestStream sends directly, or through one
// stateless SDK stage without side inputs (the usual WindowInto and key
// extraction). Such a stage reports every element it has read (the SDK's
// element count), after its output for them has been sent; so once it has
// read all the TestStream sent, the GroupByKey's inbox holds the rest of
// what came before the advance. Further away, the order of an advance and
// the data before it could not be told, and a GroupByKey keeps the wall
// clock.
type tsClock struct {
	start int64
	mu    sync.Mutex
	subs  []*tsSub
}

// tsSub is a triggered GroupByKey subtask following a tsClock.
type tsSub struct {
	via   *plan.Stage // the SDK stage between the TestStream and it; nil if none
	ticks chan tsTick
	quit  chan struct{} // closed when the subtask ends
}

// tsTick moves a subscriber's processing time to at; it closes done once
// the subtask has taken in what its inbox held and fired what is due.
type tsTick struct {
	at   int64
	done chan struct{}
}

// tsClocks holds the clock of each TestStream stage, while the stage (and
// so its plan) is alive.
var tsClocks = struct {
	sync.Mutex
	m map[weak.Pointer[plan.Stage]]*tsClock
}{m: map[weak.Pointer[plan.Stage]]*tsClock{}}

// clockOf returns the synthetic processing time of TestStream stage ts.
func clockOf(ts *plan.Stage, now time.Time) *tsClock {
	k := weak.Make(ts)
	tsClocks.Lock()
	defer tsClocks.Unlock()
	c := tsClocks.m[k]
	if c == nil {
		c = &tsClock{start: now.UnixMilli()}
		tsClocks.m[k] = c
		runtime.AddCleanup(ts, func(k weak.Pointer[plan.Stage]) {
			tsClocks.Lock()
			delete(tsClocks.m, k)
			tsClocks.Unlock()
		}, k)
	}
	return c
}

// subscribe adds a subtask that reads its input from via (or directly from
// the TestStream if via is nil).
func (c *tsClock) subscribe(via *plan.Stage) *tsSub {
	s := &tsSub{via: via, ticks: make(chan tsTick), quit: make(chan struct{})}
	c.mu.Lock()
	c.subs = append(c.subs, s)
	c.mu.Unlock()
	return s
}

// testStreamFeeding returns the TestStream stage whose processing time
// GroupByKey g follows, and the SDK stage between them (nil if none); nil,
// nil if g does not follow one.
func testStreamFeeding(p *plan.Plan, g *plan.Stage) (ts, via *plan.Stage) {
	producer := func(pc string) *plan.Stage {
		if c := p.PColls[pc]; c != nil {
			return c.Producer
		}
		return nil
	}
	up := producer(g.Input)
	switch {
	case up == nil:
		return nil, nil
	case up.Kind == plan.KindTestStream:
		return up, nil
	case up.Kind == plan.KindSDK && len(up.SideInputs) == 0 && up.Splittable == "" && !up.Stateful:
		if ts := producer(up.Input); ts != nil && ts.Kind == plan.KindTestStream {
			return ts, up
		}
	}
	return nil, nil
}

// settleTimeout is how long the replay waits for an SDK stage that reads
// none of what is sent to it before it advances processing time anyway.
// Nothing should take that long; it is a guard against a hang.
const settleTimeout = 30 * time.Second

// advance moves the clock to at, once its followers have taken in the sent
// elements (per output) sent before, and waits until they have acted on it.
func (c *tsClock) advance(ctx context.Context, e *Engine, sent, at int64) error {
	c.mu.Lock()
	subs := slices.Clone(c.subs)
	c.mu.Unlock()
	settled := map[*plan.Stage]bool{}
	for _, s := range subs {
		if s.via == nil || settled[s.via] {
			continue
		}
		settled[s.via] = true
		if err := settle(ctx, e, s.via, sent); err != nil {
			return err
		}
	}
	var waiting []tsTick
	for _, s := range subs {
		tk := tsTick{at: at, done: make(chan struct{})}
		select {
		case s.ticks <- tk:
			waiting = append(waiting, tk)
		case <-s.quit:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	for _, tk := range waiting {
		select {
		case <-tk.done:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// settle waits until SDK stage s has read n elements.
func settle(ctx context.Context, e *Engine, s *plan.Stage, n int64) error {
	p := e.progress[s]
	clock := e.o.Clock
	last, since := p.in.Load(), clock.Now()
	for p.in.Load() < n {
		if got := p.in.Load(); got != last {
			last, since = got, clock.Now()
		} else if clock.Since(since) > settleTimeout {
			e.o.Logger.Warn("TestStream: advancing processing time before the next stage has read what was sent", "stage", s.Name, "read", got, "sent", n)
			return nil
		}
		select {
		case <-clock.After(time.Millisecond):
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	return nil
}

// lengthPrefixed reports whether the output travels length-prefixed
// (its coder is not one the runner walks), so that encoded elements from
// the payload must be wrapped.
func (t *testStreamTask) lengthPrefixed() (bool, error) {
	if len(t.stage.Outputs) == 0 {
		return false, nil
	}
	pc := t.e.plan.PColls[t.stage.Outputs[0]]
	orig := t.e.plan.Components.GetPcollections()[pc.ID].GetCoderId()
	if pc.ElemCoder == orig {
		return false, nil
	}
	c := t.e.plan.Components.GetCoders()[pc.ElemCoder]
	if c.GetSpec().GetUrn() == wire.URNLengthPrefix && len(c.GetComponentCoderIds()) == 1 && c.GetComponentCoderIds()[0] == orig {
		return true, nil
	}
	return false, fmt.Errorf("%s: TestStream elements of coder %q would need re-encoding to travel as %q", t.name(), orig, pc.ElemCoder)
}
