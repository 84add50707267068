package engine

import (
	"context"
	"fmt"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// testStreamTask replays a TestStream: elements in the global window with
// their timestamps, and watermark advances, in the order the test wrote
// them. Every consumer sees each element before the watermark that
// follows it, because both travel in band. Processing-time advances are
// not replayed: weir's processing time is the wall clock.
type testStreamTask struct{ subtask }

func (t *testStreamTask) run(ctx context.Context) error {
	tr := t.e.plan.Components.GetTransforms()[t.stage.Transforms[0]]
	payload := &pipepb.TestStreamPayload{}
	if err := proto.Unmarshal(tr.GetSpec().GetPayload(), payload); err != nil {
		return fmt.Errorf("%s: decoding TestStream payload: %w", t.name(), err)
	}
	wrap, err := t.lengthPrefixed()
	if err != nil {
		return err
	}
	wm := wire.MinTimestamp
	for _, ev := range payload.GetEvents() {
		select {
		case <-t.e.drain:
			return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
		default:
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
		}
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
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
