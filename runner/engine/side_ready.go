package engine

import (
	"fmt"
	"math"

	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// Per-window readiness of side inputs.
//
// A main input element may run once, for each of its windows, the side
// input window that window maps to (sideWindowFn) is ready on every side
// input: the side input port's watermark has passed the side window's max
// timestamp, or the port has ended. An element's need is the latest such
// max timestamp over its windows and side inputs (the maximum timestamp
// when a side input's windows cannot be mapped: it waits for the end); it
// is ready when its need is before the ready bound, the least watermark of
// the side inputs still running. Elements that are not ready are parked
// in Pebble under their need (an element in several windows that need
// different side windows is parked once per window), and released, lowest
// need first, as the bound advances. Parked elements hold the main input
// watermark the subtask acts on (timers, window expiry) and so its output
// watermark.

// parker tracks what the subtask has parked; the elements are in its DB.
type parker struct {
	db    *state.DB
	any   bool  // something is parked
	need  int64 // least need parked
	minTs int64 // least element timestamp parked
	more  bool  // the last release stopped at its budget with ready input left
}

// init takes up what db holds parked (from a restored checkpoint).
func (p *parker) init(db *state.DB) error {
	p.db = db
	return p.refresh()
}

// refresh reads the least need and timestamp parked.
func (p *parker) refresh() error {
	need, minTs, ok, err := p.db.ParkedBounds()
	if err != nil {
		return err
	}
	p.any, p.need, p.minTs = ok, need, minTs
	return nil
}

// hold is the least timestamp of parked input (the maximum if none).
func (p *parker) hold() int64 {
	if !p.any {
		return wire.MaxTimestamp
	}
	return p.minTs
}

// parkRun is parked input of one need, built up by admit.
type parkRun struct {
	data  []byte
	minTs int64
}

// sideBound is the ready bound: input whose need is before it may run.
// It is math.MaxInt64, past every need, once every side input has ended.
func (t *sdkTask) sideBound() int64 {
	bound := int64(math.MaxInt64)
	for i := 1; i < len(t.ports); i++ {
		if !t.ports[i].done() {
			bound = min(bound, t.ports[i].watermark())
		}
	}
	return bound
}

// mainWatermark is the main input watermark the subtask acts on: its
// port's, held back just below parked input (holdBelow: an element parked
// at ts is input at ts still to come, so neither a timer due at ts nor a
// downstream window ending at ts may fire before it runs).
func (t *sdkTask) mainWatermark() int64 {
	return min(t.ports[0].watermark(), holdBelow(t.park.hold()))
}

// windowNeed is the need of a main input window: the latest max timestamp
// of the side windows it reads.
func (t *sdkTask) windowNeed(w []byte) int64 {
	mainMax, err := wire.WindowMaxTimestamp(t.inWV.Window, w)
	if err != nil {
		return wire.MaxTimestamp // a window the runner cannot read: wait for the end
	}
	need := wire.MinTimestamp
	for _, s := range t.sides {
		if s.window == nil {
			return wire.MaxTimestamp
		}
		need = max(need, s.window(mainMax))
	}
	return need
}

// admit takes a chunk of main input: what is ready joins the pending
// input, the rest is parked.
func (t *sdkTask) admit(data []byte) error {
	bound := t.sideBound()
	if len(t.sides) == 0 || bound == math.MaxInt64 {
		t.addPending(data)
		return nil
	}
	var ready []byte
	runs := map[int64]*parkRun{}
	var order []int64
	park := func(need, ts int64, raw []byte) {
		if need < bound {
			ready = append(ready, raw...)
			return
		}
		r := runs[need]
		if r == nil {
			r = &parkRun{minTs: ts}
			runs[need] = r
			order = append(order, need)
		}
		r.data = append(r.data, raw...)
		r.minTs = min(r.minTs, ts)
	}
	var needs []int64
	err := t.inWV.ForEach(data, func(e wire.Element) error {
		needs = needs[:0]
		same := true
		for _, w := range e.Windows {
			n := t.windowNeed(w)
			same = same && (len(needs) == 0 || n == needs[0])
			needs = append(needs, n)
		}
		switch {
		case len(needs) == 0:
			park(wire.MinTimestamp, e.Timestamp, e.Raw) // no window: nothing to wait for
		case same:
			park(needs[0], e.Timestamp, e.Raw)
		default:
			for i, w := range e.Windows {
				park(needs[i], e.Timestamp, wire.AppendWindowedValue(nil, e.Timestamp, [][]byte{w}, e.Pane, e.Value))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: reading input: %w", t.name(), err)
	}
	if len(ready) > 0 {
		t.addPending(ready)
	}
	for _, need := range order {
		r := runs[need]
		if err := t.sideDB.Park(need, r.minTs, r.data); err != nil {
			return fmt.Errorf("%s: %w", t.name(), err)
		}
		if !t.park.any || need < t.park.need {
			t.park.need = need
		}
		if !t.park.any || r.minTs < t.park.minTs {
			t.park.minTs = r.minTs
		}
		t.park.any = true
	}
	return nil
}

// releaseParked moves parked input that has become ready into the pending
// input, up to a bundle's worth; park.more says whether ready input is
// left for the next call.
func (t *sdkTask) releaseParked() error {
	t.park.more = false
	if !t.park.any {
		return nil
	}
	bound := t.sideBound()
	if t.park.need >= bound {
		return nil
	}
	budget := t.bundleBytes() - t.pendingBytes
	if budget <= 0 {
		t.park.more = true
		return nil
	}
	var chunk []byte
	more, err := t.sideDB.ReleaseParked(bound, budget, func(el []byte) error {
		chunk = append(chunk, el...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	if len(chunk) > 0 {
		t.addPending(chunk)
	}
	t.park.more = more
	if err := t.park.refresh(); err != nil {
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	return nil
}
