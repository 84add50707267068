package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"weak"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// Tests of processing-time triggers: a TestStream's synthetic processing
// time driving a triggered GroupByKey, windows left open by a
// processing-time firing, and wall-clock wake-ups.

// Trigger protos.
func aptTrigger(delayMs int64) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterProcessingTime_{AfterProcessingTime: &pipepb.Trigger_AfterProcessingTime{
		TimestampTransforms: []*pipepb.TimestampTransform{{TimestampTransform: &pipepb.TimestampTransform_Delay_{Delay: &pipepb.TimestampTransform_Delay{DelayMillis: delayMs}}}},
	}}}
}

func aptCount(n int32) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_ElementCount_{ElementCount: &pipepb.Trigger_ElementCount{ElementCount: n}}}
}

func aptRepeat(t *pipepb.Trigger) *pipepb.Trigger {
	return &pipepb.Trigger{Trigger: &pipepb.Trigger_Repeat_{Repeat: &pipepb.Trigger_Repeat{Subtrigger: t}}}
}

// tsEvent builders.
func tsElems(ts int64, kvs ...string) *pipepb.TestStreamPayload_Event {
	var els []*pipepb.TestStreamPayload_TimestampedElement
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		els = append(els, &pipepb.TestStreamPayload_TimestampedElement{EncodedElement: kvBytes(k, v), Timestamp: ts})
	}
	return &pipepb.TestStreamPayload_Event{Event: &pipepb.TestStreamPayload_Event_ElementEvent{ElementEvent: &pipepb.TestStreamPayload_Event_AddElements{Elements: els}}}
}

func tsPT(ms int64) *pipepb.TestStreamPayload_Event {
	return &pipepb.TestStreamPayload_Event{Event: &pipepb.TestStreamPayload_Event_ProcessingTimeEvent{ProcessingTimeEvent: &pipepb.TestStreamPayload_Event_AdvanceProcessingTime{AdvanceDuration: ms}}}
}

func tsWM(ms int64) *pipepb.TestStreamPayload_Event {
	return &pipepb.TestStreamPayload_Event{Event: &pipepb.TestStreamPayload_Event_WatermarkEvent{WatermarkEvent: &pipepb.TestStreamPayload_Event_AdvanceWatermark{NewWatermark: ms}}}
}

// tsPipeline runs TestStream → [an SDK stage] → triggered GroupByKey. The
// SDK stage, if via, is a stand-in that forwards what it reads after a
// delay (so that a processing-time advance not waiting for it would
// overtake the data) and then counts it, as sdkTask does.
type tsPipeline struct {
	t        *testing.T
	e        *Engine
	out      inbox
	outWV    wire.WVCoder
	done     chan error
	dataMsgs int
}

func startTSPipeline(t *testing.T, ws *pipepb.WindowingStrategy, via bool, events ...*pipepb.TestStreamPayload_Event) *tsPipeline {
	t.Helper()
	coders := testCoders()
	inWV := wire.AddWindowedValue(coders, "kv", "gw")
	iter := wire.AddCoder(coders, wire.URNIterable, nil, "str")
	kvOut := wire.AddCoder(coders, wire.URNKV, nil, "str", iter)
	outWV := wire.AddWindowedValue(coders, kvOut, "gw")
	if ws.GetWindowFn() == nil {
		ws.WindowFn = &pipepb.FunctionSpec{Urn: plan.URNGlobalWindows}
	}

	payload, err := proto.Marshal(&pipepb.TestStreamPayload{CoderId: "kv", Events: events})
	if err != nil {
		t.Fatal(err)
	}
	tsStage := &plan.Stage{ID: "ts", Kind: plan.KindTestStream, Name: "TestStream", Transforms: []string{"tsT"}, Outputs: []string{"ts"}}
	gInput := "ts"
	stages := []*plan.Stage{tsStage}
	var viaStage *plan.Stage
	if via {
		viaStage = &plan.Stage{ID: "via", Kind: plan.KindSDK, Name: "WindowInto", Input: "ts", Outputs: []string{"mid"}}
		stages = append(stages, viaStage)
		gInput = "mid"
	}
	g := &plan.Stage{ID: "gbk", Kind: plan.KindGBK, Name: "GroupByKey", Input: gInput, Outputs: []string{"out"}, WindowingStrategy: ws}
	stages = append(stages, g)
	pcolls := map[string]*plan.PColl{
		"ts":  {ID: "ts", WireCoder: inWV, ElemCoder: "kv", Producer: tsStage},
		"out": {ID: "out", WireCoder: outWV, ElemCoder: kvOut, Producer: g},
	}
	if via {
		pcolls["mid"] = &plan.PColl{ID: "mid", WireCoder: inWV, ElemCoder: "kv", Producer: viaStage}
	}
	p := &plan.Plan{
		Components: &pipepb.Components{
			Coders:       coders,
			Transforms:   map[string]*pipepb.PTransform{"tsT": {Spec: &pipepb.FunctionSpec{Urn: "beam:transform:teststream:v1", Payload: payload}}},
			Pcollections: map[string]*pipepb.PCollection{"ts": {CoderId: "kv"}},
		},
		Stages: stages,
		PColls: pcolls,
	}
	e := New(p, Options{Parallelism: 1, MaxParallelism: testMaxP, Logger: slog.New(slog.DiscardHandler)})
	ctx := testCtx(t)

	h := &tsPipeline{t: t, e: e, out: make(inbox, 1024), outWV: mustWV(t, coders, outWV), done: make(chan error, 1)}
	gIn := make(inbox, DefaultLimits.InboxSize)
	oOut := &output{pcoll: "out", wv: h.outWV, targets: []target{{port: 0, part: plan.Forward, inboxes: []inbox{h.out}}}}
	gRouter := &router{sender: "gbk/0", maxP: testMaxP, outs: map[string]*output{"out": oOut}, order: []*output{oOut}}
	base := subtask{stage: g, in: gIn, out: gRouter, ports: []portState{{senders: 1}}, e: e}
	gt, err := newGBKTask(context.Background(), base, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := newTriggeredGBK(gt)
	if err != nil {
		t.Fatal(err)
	}

	tsTarget := gIn
	if via {
		viaIn := make(inbox, DefaultLimits.InboxSize)
		tsTarget = viaIn
		wv := mustWV(t, coders, inWV)
		go func() {
			for {
				var m msg
				select {
				case m = <-viaIn:
				case <-ctx.Done():
					return
				}
				if m.kind == msgData {
					time.Sleep(20 * time.Millisecond)
					var n int64
					_ = wv.ForEach(m.data, func(wire.Element) error { n++; return nil })
					if gIn.send(ctx, msg{kind: msgData, sender: "via/0", data: m.data}) != nil {
						return
					}
					e.countInput(viaStage, n)
					continue
				}
				if gIn.send(ctx, msg{kind: m.kind, sender: "via/0", wm: m.wm}) != nil || m.kind == msgEOI {
					return
				}
			}
		}()
	}
	oTS := &output{pcoll: "ts", wv: mustWV(t, coders, inWV), targets: []target{{port: 0, part: plan.Forward, inboxes: []inbox{tsTarget}}}}
	tsRouter := &router{sender: "ts/0", maxP: testMaxP, outs: map[string]*output{"ts": oTS}, order: []*output{oTS}}
	tsTask := &testStreamTask{subtask: subtask{stage: tsStage, out: tsRouter, e: e}}

	errs := make(chan error, 2)
	go func() { errs <- tsTask.run(ctx) }()
	go func() { errs <- tg.run(ctx) }()
	go func() {
		var first error
		for range 2 {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		h.done <- first
	}()
	return h
}

// panes waits for the pipeline to end and renders each pane as
// "key [values] TIMING[ last]", in the order emitted.
func (h *tsPipeline) panes() []string {
	h.t.Helper()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("pipeline: %v", err)
		}
	case <-testCtx(h.t).Done():
		h.t.Fatal("pipeline did not end")
	}
	return h.render(drain(h.out))
}

func (h *tsPipeline) render(ms []msg) []string {
	h.t.Helper()
	out := []string{}
	for _, m := range ms {
		if m.kind != msgData {
			continue
		}
		h.dataMsgs++
		err := h.outWV.ForEach(m.data, func(e wire.Element) error {
			key, vals, p, err := readGroup(h.t, h.outWV, e)
			if err != nil {
				return err
			}
			s := fmt.Sprintf("%s %v %s", key, vals, p.Timing)
			if p.IsLast {
				s += " last"
			}
			out = append(out, s)
			return nil
		})
		if err != nil {
			h.t.Fatal(err)
		}
	}
	return out
}

func checkPanes(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("panes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// Beam's TestTriggerAfterProcessingTime and its NotTriggered twin, keyed.
func TestTestStreamProcessingTimeDrivesTrigger(t *testing.T) {
	for _, via := range []bool{false, true} {
		t.Run(fmt.Sprintf("via SDK stage %v", via), func(t *testing.T) {
			t.Run("reached", func(t *testing.T) {
				ws := &pipepb.WindowingStrategy{Trigger: aptTrigger(5000)}
				h := startTSPipeline(t, ws, via, tsPT(100), tsElems(1000, "k=1", "k=2", "k=3"), tsPT(5000), tsElems(22000, "k=4"))
				// The pane fired on processing time finishes the trigger but
				// leaves the window open: 4 comes out at its end.
				checkPanes(t, h.panes(), []string{"k [1 2 3] EARLY", "k [4] ON_TIME last"})
			})
			t.Run("not reached", func(t *testing.T) {
				ws := &pipepb.WindowingStrategy{Trigger: aptTrigger(5000)}
				h := startTSPipeline(t, ws, via, tsPT(100), tsElems(1000, "k=1", "k=2", "k=3"), tsPT(4999), tsElems(22000, "k=4"))
				checkPanes(t, h.panes(), []string{"k [1 2 3 4] ON_TIME last"})
			})
			t.Run("repeated, two keys", func(t *testing.T) {
				ws := &pipepb.WindowingStrategy{Trigger: aptRepeat(aptTrigger(1000))}
				h := startTSPipeline(t, ws, via,
					tsElems(1, "a=1"), tsPT(500), tsElems(2, "b=1", "a=2"), tsPT(500), // a fires at 1000
					tsElems(3, "a=3"), tsPT(500), // b fires at 1500
					tsElems(4, "b=2"), tsPT(499), tsPT(1), // a fires at 2000
					tsElems(5, "b=3"), tsWM(100))
				checkPanes(t, h.panes(), []string{
					"a [1 2] EARLY", "b [1] EARLY", "a [3] EARLY", "b [2 3] ON_TIME last",
				})
			})
		})
	}
}

// An ElementCount that finishes the trigger closes the window: the elements
// after it are dropped, whatever processing time does.
func TestTestStreamCountFinishClosesWindow(t *testing.T) {
	ws := &pipepb.WindowingStrategy{Trigger: aptCount(2)}
	h := startTSPipeline(t, ws, true, tsElems(1, "k=1", "k=2", "k=3"), tsPT(10_000), tsElems(2, "k=4"))
	checkPanes(t, h.panes(), []string{"k [1 2] EARLY last"})
}

// Accumulating panes: a firing with nothing new since the last pane emits
// nothing, so the end of the window and its expiry do not repeat the last
// early pane.
func TestTriggeredAccumulatingNoRepeatedPane(t *testing.T) {
	early := &pipepb.Trigger{Trigger: &pipepb.Trigger_AfterEndOfWindow_{AfterEndOfWindow: &pipepb.Trigger_AfterEndOfWindow{EarlyFirings: aptCount(1)}}}
	for _, tc := range []struct {
		name   string
		events []*pipepb.TestStreamPayload_Event
		want   []string
	}{{
		name:   "nothing new at the end",
		events: []*pipepb.TestStreamPayload_Event{tsElems(1, "k=1"), tsElems(2, "k=2")},
		want:   []string{"k [1] EARLY", "k [1 2] EARLY"},
	}, {
		name:   "a new element at the end",
		events: []*pipepb.TestStreamPayload_Event{tsElems(1, "k=1"), tsElems(2, "k=2"), tsWM(3), tsElems(3, "k=3")},
		want:   []string{"k [1] EARLY", "k [1 2] EARLY", "k [1 2 3] EARLY"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ws := &pipepb.WindowingStrategy{Trigger: early, AccumulationMode: pipepb.AccumulationMode_ACCUMULATING}
			h := startTSPipeline(t, ws, false, tc.events...)
			checkPanes(t, h.panes(), tc.want)
		})
	}
}

// On the wall clock, after a wake-up the next processing-time timer (of
// another key) is waited for too, not only the ones set afterwards.
func TestTriggeredWallClockWakesEveryKey(t *testing.T) {
	coders := testCoders()
	inWV := wire.AddWindowedValue(coders, "kv", "gw")
	iter := wire.AddCoder(coders, wire.URNIterable, nil, "str")
	kvOut := wire.AddCoder(coders, wire.URNKV, nil, "str", iter)
	outWV := wire.AddWindowedValue(coders, kvOut, "gw")
	ws := &pipepb.WindowingStrategy{WindowFn: &pipepb.FunctionSpec{Urn: plan.URNGlobalWindows}, Trigger: aptTrigger(30)}
	g := &plan.Stage{ID: "gbk", Kind: plan.KindGBK, Name: "GroupByKey", Input: "in", Outputs: []string{"out"}, WindowingStrategy: ws}
	p := &plan.Plan{
		Components: &pipepb.Components{Coders: coders},
		Stages:     []*plan.Stage{g},
		PColls: map[string]*plan.PColl{
			"in":  {ID: "in", WireCoder: inWV, ElemCoder: "kv"},
			"out": {ID: "out", WireCoder: outWV, ElemCoder: kvOut, Producer: g},
		},
	}
	e := New(p, Options{Parallelism: 1, MaxParallelism: testMaxP, Logger: slog.New(slog.DiscardHandler)})
	ctx := testCtx(t)
	h := &tsPipeline{t: t, e: e, out: make(inbox, 1024), outWV: mustWV(t, coders, outWV), done: make(chan error, 1)}
	in := make(inbox)
	o := &output{pcoll: "out", wv: h.outWV, targets: []target{{port: 0, part: plan.Forward, inboxes: []inbox{h.out}}}}
	r := &router{sender: "gbk/0", maxP: testMaxP, outs: map[string]*output{"out": o}, order: []*output{o}}
	gt, err := newGBKTask(context.Background(), subtask{stage: g, in: in, out: r, ports: []portState{{senders: 1}}, e: e}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := newTriggeredGBK(gt)
	if err != nil {
		t.Fatal(err)
	}
	go func() { h.done <- tg.run(ctx) }()
	send := func(m msg) {
		if err := in.send(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	send(msg{kind: msgData, sender: "up/0", data: kvElem(1, "a", "1", wire.GlobalWindow())})
	time.Sleep(10 * time.Millisecond)
	send(msg{kind: msgData, sender: "up/0", data: kvElem(2, "b", "1", wire.GlobalWindow())})
	var got []msg
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case m := <-h.out:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("only %d panes before the end of input: %q", len(got), h.render(got))
		}
	}
	send(msg{kind: msgEOI, sender: "up/0", wm: wire.MaxTimestamp})
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	checkPanes(t, h.render(got), []string{"a [1] EARLY", "b [1] EARLY"})
}

// The clock of a TestStream stage goes when the stage does.
func TestTSClockForgotten(t *testing.T) {
	s := &plan.Stage{ID: "ts", Kind: plan.KindTestStream}
	if c1, c2 := clockOf(s, time.Now()), clockOf(s, time.Now()); c1 != c2 {
		t.Fatal("two clocks for one stage")
	}
	k := weak.Make(s)
	held := func() bool {
		tsClocks.Lock()
		defer tsClocks.Unlock()
		_, ok := tsClocks.m[k]
		return ok
	}
	if !held() {
		t.Fatal("no clock kept for the stage")
	}
	runtime.KeepAlive(s)
	for i := 0; i < 100 && held(); i++ {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if held() {
		t.Error("the clock outlived its stage")
	}
}
