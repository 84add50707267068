package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/trigger"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// triggeredGBK is a GroupByKey whose windows fire by a trigger other than
// Default and Always. For each (key, window) it keeps, in Pebble, the
// buffered values, the trigger's state and the pane count, and three
// timers: the end of the window, processing-time wake-ups the trigger asks
// for, and expiry (end plus allowed lateness), when a last pane fires and
// everything of the window is forgotten. Non-merging windows only.
//
// Processing time is the wall clock, or, behind a TestStream that
// advances processing time, that TestStream's synthetic clock (see
// tsClock): then it moves only at the TestStream's ticks.
type triggeredGBK struct {
	*gbkTask
	m          *trigger.Machine
	lateness   int64
	discarding bool
	wake       int64 // earliest processing-time wake-up set on the wall clock, 0 if none
	closed     int64 // elements dropped because their window was closed or expired
	out        []byte
	inWM       int64  // input watermark
	sub        *tsSub // the synthetic clock followed, or nil for the wall clock
	pt         int64  // synthetic processing time (with sub)
	// ticking is a tick of the synthetic clock taken but not yet applied:
	// what the inbox held when it came is handled first, one message a
	// step, then processing time moves.
	ticking *tsTick
}

// Cells and timers of a (key, window), under transform "g".
const (
	gTransform = "g"
	cellValues = "v"
	cellTrig   = "t"
	cellMeta   = "m"
	famEnd     = "end"
	famWake    = "wake"
	famExpiry  = "gc"
)

// paneMeta is a window's pane bookkeeping.
type paneMeta struct {
	panes    int64
	onTime   bool // the ON_TIME pane has fired (or the end passed)
	fresh    bool // elements arrived since the last pane
	min, max int64
	exists   bool
}

func (p paneMeta) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(p.panes))
	f := byte(0)
	if p.onTime {
		f |= 1
	}
	if p.fresh {
		f |= 2
	}
	b = append(b, f)
	b = binary.BigEndian.AppendUint64(b, uint64(p.min))
	return binary.BigEndian.AppendUint64(b, uint64(p.max))
}

func decodeMeta(b []byte) (paneMeta, error) {
	if len(b) == 0 {
		return paneMeta{min: wire.MaxTimestamp, max: wire.MinTimestamp}, nil
	}
	if len(b) != 25 {
		return paneMeta{}, fmt.Errorf("pane bookkeeping of %d bytes, want 25", len(b))
	}
	return paneMeta{
		panes: int64(binary.BigEndian.Uint64(b)), onTime: b[8]&1 != 0, fresh: b[8]&2 != 0,
		min: int64(binary.BigEndian.Uint64(b[9:])), max: int64(binary.BigEndian.Uint64(b[17:])), exists: true,
	}, nil
}

func newTriggeredGBK(g *gbkTask) (*triggeredGBK, error) {
	ws := g.stage.WindowingStrategy
	m, err := trigger.New(ws.GetTrigger())
	if err != nil {
		return nil, fmt.Errorf("group by key %q: %w", g.stage.Name, err)
	}
	t := &triggeredGBK{
		gbkTask:    g,
		m:          m,
		lateness:   ws.GetAllowedLateness(),
		discarding: ws.GetAccumulationMode() != pipepb.AccumulationMode_ACCUMULATING,
		inWM:       wire.MinTimestamp,
	}
	if ts, via := testStreamFeeding(g.e.plan, g.stage); ts != nil {
		payload, err := testStreamPayload(g.e.plan, ts)
		if err != nil {
			return nil, fmt.Errorf("group by key %q: %w", g.stage.Name, err)
		}
		if advancesProcessingTime(payload) {
			c := clockOf(ts, t.e.now())
			t.sub, t.pt = c.subscribe(via), c.start
		}
	}
	return t, nil
}

// now is the processing time, in milliseconds.
func (t *triggeredGBK) now() int64 {
	if t.sub != nil {
		return t.pt
	}
	return t.e.now().UnixMilli()
}

func (t *triggeredGBK) cell(kg int, key, window []byte, id string) state.Cell {
	return state.Cell{KeyGroup: kg, Transform: gTransform, StateID: id, Window: window, Key: key}
}

func (t *triggeredGBK) timer(kg int, key, window []byte, domain int, fam string) state.TimerID {
	return state.TimerID{KeyGroup: kg, Domain: domain, Transform: gTransform, Family: fam, Key: key, Window: window}
}

// trigEvent is one thing that happens to a triggered GroupByKey: a message
// of its inbox, the processing-time wake-up it asked for falling due, a
// tick of the TestStream clock it follows, or (moved) that tick's time
// coming, once what was queued before it has been handled. Exactly one is
// set.
type trigEvent struct {
	m     *msg
	wake  bool
	tick  *tsTick
	moved bool
}

// more says the subtask has more to do than finishing: an input has not
// ended, or a tick waits to be applied.
func (t *triggeredGBK) more() bool { return !t.allDone() || t.ticking != nil }

// run is the subtask's goroutine: it waits for the next event and steps.
func (t *triggeredGBK) run(ctx context.Context) error {
	defer t.db.Close()
	if t.sub != nil {
		defer close(t.sub.quit)
	}
	return runSteps(ctx, t.more, t.next, t.step, t.finish)
}

// next waits for the next event: a message, the wake-up the subtask set
// (timed on the engine's clock), or a TestStream tick.
func (t *triggeredGBK) next(ctx context.Context) (trigEvent, error) {
	var wake <-chan time.Time
	if t.wake > 0 {
		c := t.e.o.Clock
		tm := c.NewTimer(time.UnixMilli(t.wake).Sub(c.Now()))
		defer tm.Stop()
		wake = tm.Chan()
	}
	var ticks chan tsTick
	if t.sub != nil {
		ticks = t.sub.ticks
	}
	t.subtask.release()
	if t.ticking != nil {
		// A tick waits for what is queued before it: the inbox, until empty.
		select {
		case m := <-t.subtask.in:
			t.subtask.took(m)
			return trigEvent{m: &m}, nil
		default:
			return trigEvent{moved: true}, nil
		}
	}
	select {
	case m := <-t.subtask.in:
		t.subtask.took(m)
		return trigEvent{m: &m}, nil
	case <-wake:
		return trigEvent{wake: true}, nil
	case tk := <-ticks:
		return trigEvent{tick: &tk}, nil
	case <-ctx.Done():
		return trigEvent{}, context.Cause(ctx)
	}
}

// step takes one event: a message is taken in (handle), a wake-up fires
// the processing-time timers due and sets the next one, a tick is held
// until what was queued before it is handled, then moves the synthetic
// processing time.
func (t *triggeredGBK) step(ctx context.Context, ev trigEvent) error {
	switch {
	case ev.m != nil:
		return t.handle(ctx, *ev.m)
	case ev.tick != nil:
		t.ticking = ev.tick
	case ev.moved && t.ticking != nil:
		tk := *t.ticking
		t.ticking = nil
		return t.tick(ctx, tk)
	case ev.wake:
		t.wake = 0
		return t.inBundle(ctx, func(b *state.Bundle) error {
			if err := t.onProcessingTime(b, t.inWM, t.now()); err != nil {
				return err
			}
			return t.rearm(b)
		})
	}
	return nil
}

// finish ends the subtask once every input has ended.
func (t *triggeredGBK) finish(ctx context.Context) error {
	if t.closed > 0 {
		t.e.o.Logger.Info("dropped data for closed or expired windows", "stage", t.name(), "elements", t.closed)
	}
	return t.gbkTask.out.control(ctx, msgEOI, wire.MaxTimestamp)
}

// handle takes in one message of the inbox.
func (t *triggeredGBK) handle(ctx context.Context, m msg) error {
	if m.kind == msgBarrier { // windows, panes and timers are all in Pebble
		return t.snapshot(ctx, m.chk, t.db, &taskState{InWM: t.inWM, Dropped: t.closed}, nil)
	}
	now := t.now()
	err := t.inBundle(ctx, func(b *state.Bundle) error {
		switch m.kind {
		case msgData:
			var n int64
			maxP := t.e.o.MaxParallelism
			err := t.gbkTask.in.ForEach(m.data, func(e wire.Element) error {
				n++
				k, v, err := t.gbkTask.in.Elem.SplitKV(e.Value)
				if err != nil {
					return err
				}
				kg := state.KeyGroup(k, maxP)
				for _, w := range e.Windows {
					if err := t.onElement(b, kg, k, w, e.Timestamp, v, t.inWM, now); err != nil {
						return err
					}
				}
				return nil
			})
			t.e.countInput(t.stage, n)
			return err
		default:
			if !t.ports[m.port].observe(m) {
				return nil
			}
			if wm := t.ports[0].watermark(); wm > t.inWM {
				t.inWM = wm
				return t.onWatermark(b, t.inWM, now)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if m.kind != msgData && t.inWM < wire.MaxTimestamp {
		return t.gbkTask.out.control(ctx, msgWatermark, t.inWM)
	}
	return nil
}

// tick moves the synthetic processing time. What the TestStream sent
// before the advance had reached the inbox when the tick came (see
// tsClock), and has been taken in since, at the time it arrived (next,
// step).
func (t *triggeredGBK) tick(ctx context.Context, tk tsTick) error {
	if tk.at > t.pt {
		t.pt = tk.at
		if err := t.inBundle(ctx, func(b *state.Bundle) error { return t.onProcessingTime(b, t.inWM, t.pt) }); err != nil {
			return err
		}
	}
	close(tk.done)
	return nil
}

// inBundle runs fn in a state bundle, commits it and sends the panes fired.
func (t *triggeredGBK) inBundle(ctx context.Context, fn func(b *state.Bundle) error) error {
	b := t.db.NewBundle()
	if err := fn(b); err != nil {
		b.Discard()
		t.out = nil
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	if err := b.Commit(); err != nil {
		t.out = nil
		return fmt.Errorf("%s: %w", t.name(), err)
	}
	out := t.out
	t.out = nil
	if len(out) > 0 && len(t.stage.Outputs) > 0 {
		return t.gbkTask.out.emit(ctx, t.stage.Outputs[0], out)
	}
	return nil
}

// restore takes back a checkpoint's input watermark and re-arms the
// processing-time wake-up from the timers restored in Pebble.
func (t *triggeredGBK) restore(st *taskState) error {
	t.inWM, t.closed = st.InWM, st.Dropped
	return t.inBundle(context.Background(), t.rearm)
}

// rearm sets the wall-clock wake-up to the earliest processing-time timer
// left (of the first Limits.TimersPerFiring in key-group order).
func (t *triggeredGBK) rearm(b *state.Bundle) error {
	left, err := b.DueTimersIn(processingTime, t.kgStart, t.kgEnd, math.MaxInt64, t.e.o.Limits.TimersPerFiring)
	if err != nil {
		return err
	}
	for _, tm := range left {
		if t.wake == 0 || tm.Fire < t.wake {
			t.wake = tm.Fire
		}
	}
	return nil
}

// onElement adds one element to a window and asks the trigger.
func (t *triggeredGBK) onElement(b *state.Bundle, kg int, key, window []byte, ts int64, value []byte, wm, now int64) error {
	end, err := wire.WindowMaxTimestamp(t.window, window)
	if err != nil {
		return err
	}
	if end+t.lateness < wm {
		t.closed++ // expired
		return nil
	}
	st, meta, err := t.load(b, kg, key, window)
	if err != nil {
		return err
	}
	if st.Closed() {
		t.closed++
		return nil
	}
	if !meta.exists {
		if end >= wm {
			if err := b.SetTimer(state.Timer{TimerID: t.timer(kg, key, window, eventTime, famEnd), Fire: end + 1, Hold: wire.MaxTimestamp}); err != nil {
				return err
			}
		} else {
			meta.onTime = true // the end has passed: later panes are late
		}
		if err := b.SetTimer(state.Timer{TimerID: t.timer(kg, key, window, gcDomain, famExpiry), Fire: end + t.lateness + 1, Hold: wire.MaxTimestamp}); err != nil {
			return err
		}
		meta.exists = true
	}
	v := wire.AppendVarint(nil, uint64(len(value)))
	if err := b.AppendBag(t.cell(kg, key, window, cellValues), append(v, value...)); err != nil {
		return err
	}
	meta.min, meta.max = min(meta.min, ts), max(meta.max, ts)
	meta.fresh = true
	if st.Finished() {
		// Left open by a processing-time firing: the element waits for the
		// window's end (see trigger.State.Closed).
		return t.put(b, t.cell(kg, key, window, cellMeta), meta.encode())
	}
	return t.evaluate(b, kg, key, window, end, st, meta, trigger.Input{Elements: 1, Watermark: wm, ProcessingTime: now, WindowEnd: end}, false)
}

func (t *triggeredGBK) load(b *state.Bundle, kg int, key, window []byte) (*trigger.State, paneMeta, error) {
	raw, err := b.ReadBag(t.cell(kg, key, window, cellTrig))
	if err != nil {
		return nil, paneMeta{}, err
	}
	st := &trigger.State{}
	if len(raw) > 0 {
		if st, err = trigger.Decode(raw); err != nil {
			return nil, paneMeta{}, err
		}
		if err := t.m.Check(st); err != nil {
			return nil, paneMeta{}, err
		}
	}
	mraw, err := b.ReadBag(t.cell(kg, key, window, cellMeta))
	if err != nil {
		return nil, paneMeta{}, err
	}
	meta, err := decodeMeta(mraw)
	return st, meta, err
}

func (t *triggeredGBK) put(b *state.Bundle, c state.Cell, v []byte) error {
	if err := b.ClearBag(c); err != nil {
		return err
	}
	return b.AppendBag(c, v)
}

// evaluate runs the trigger on in, fires a pane if it says so (or if this
// is the window's expiry), and saves the state.
func (t *triggeredGBK) evaluate(b *state.Bundle, kg int, key, window []byte, end int64, st *trigger.State, meta paneMeta, in trigger.Input, expiry bool) error {
	fire, finished, wakeAt := t.m.OnEvent(st, in)
	if expiry {
		fire = !finished || fire
		finished = true
	}
	if fire {
		var err error
		if meta, err = t.firePane(b, kg, key, window, end, meta, in.Watermark, expiry || st.Closed()); err != nil {
			return err
		}
	}
	if wakeAt > 0 && !finished {
		if err := b.SetTimer(state.Timer{TimerID: t.timer(kg, key, window, processingTime, famWake), Fire: wakeAt, Hold: wire.MaxTimestamp}); err != nil {
			return err
		}
		if t.sub == nil && (t.wake == 0 || wakeAt < t.wake) {
			t.wake = wakeAt
		}
	}
	if err := t.put(b, t.cell(kg, key, window, cellTrig), st.Encode()); err != nil {
		return err
	}
	return t.put(b, t.cell(kg, key, window, cellMeta), meta.encode())
}

// firePane emits the window's buffered values as one pane: none if no
// element arrived since the last one (EMIT_IF_NONEMPTY, FIRE_IF_NONEMPTY;
// when accumulating, the buffer alone does not tell).
func (t *triggeredGBK) firePane(b *state.Bundle, kg int, key, window []byte, end int64, meta paneMeta, wm int64, last bool) (paneMeta, error) {
	if !meta.fresh {
		return meta, nil
	}
	vc := t.cell(kg, key, window, cellValues)
	raw, err := b.ReadBag(vc)
	if err != nil {
		return meta, err
	}
	var values [][]byte
	for len(raw) > 0 {
		n, k, err := wire.ReadVarint(raw)
		if err != nil || uint64(len(raw)-k) < n {
			return meta, fmt.Errorf("reading buffered values: corrupt length")
		}
		values = append(values, raw[k:k+int(n)])
		raw = raw[k+int(n):]
	}
	if len(values) == 0 {
		return meta, nil // no empty panes
	}
	p := wire.Pane{IsFirst: meta.panes == 0, IsLast: last, Index: meta.panes}
	switch {
	case wm <= end:
		p.Timing, p.OnTimeIndex = wire.Early, -1
	case !meta.onTime:
		p.Timing = wire.OnTime
		meta.onTime = true
	default:
		p.Timing = wire.Late
	}
	g := &group{window: window, min: meta.min, max: meta.max, values: values}
	if t.out, err = t.appendGroup(t.out, key, g, wire.AppendPane(nil, p)); err != nil {
		return meta, err
	}
	meta.panes++
	meta.fresh = false
	if t.discarding {
		if err := b.ClearBag(vc); err != nil {
			return meta, err
		}
		meta.min, meta.max = wire.MaxTimestamp, wire.MinTimestamp
	}
	return meta, nil
}

// onWatermark tells the trigger of every window whose end the watermark
// passed (a window left open by a processing-time firing emits what it
// kept since), then expires the windows past their allowed lateness.
func (t *triggeredGBK) onWatermark(b *state.Bundle, wm, now int64) error {
	if err := t.dueTimers(b, eventTime, wm, func(tm state.Timer, end int64, st *trigger.State, meta paneMeta) error {
		if st.Finished() {
			if st.Closed() {
				return nil
			}
			meta, err := t.firePane(b, tm.KeyGroup, tm.Key, tm.Window, end, meta, wm, wm > end+t.lateness)
			if err != nil {
				return err
			}
			return t.put(b, t.cell(tm.KeyGroup, tm.Key, tm.Window, cellMeta), meta.encode())
		}
		return t.evaluate(b, tm.KeyGroup, tm.Key, tm.Window, end, st, meta, trigger.Input{Watermark: wm, ProcessingTime: now, WindowEnd: end}, false)
	}); err != nil {
		return err
	}
	return t.dueTimers(b, gcDomain, wm, func(tm state.Timer, end int64, st *trigger.State, meta paneMeta) error {
		if !st.Closed() {
			if _, err := t.firePane(b, tm.KeyGroup, tm.Key, tm.Window, end, meta, wm, true); err != nil {
				return err
			}
		}
		for _, id := range []string{cellValues, cellTrig, cellMeta} {
			if err := b.ClearBag(t.cell(tm.KeyGroup, tm.Key, tm.Window, id)); err != nil {
				return err
			}
		}
		for _, f := range []struct {
			d   int
			fam string
		}{{eventTime, famEnd}, {processingTime, famWake}} {
			if err := b.ClearTimer(t.timer(tm.KeyGroup, tm.Key, tm.Window, f.d, f.fam)); err != nil {
				return err
			}
		}
		return nil
	})
}

// onProcessingTime wakes the triggers that asked for it.
func (t *triggeredGBK) onProcessingTime(b *state.Bundle, wm, now int64) error {
	return t.dueTimers(b, processingTime, now, func(tm state.Timer, end int64, st *trigger.State, meta paneMeta) error {
		if st.Finished() {
			return nil
		}
		return t.evaluate(b, tm.KeyGroup, tm.Key, tm.Window, end, st, meta, trigger.Input{Watermark: wm, ProcessingTime: now, WindowEnd: end}, false)
	})
}

// dueTimers clears and visits every timer of a domain due by upTo.
func (t *triggeredGBK) dueTimers(b *state.Bundle, domain int, upTo int64, fn func(tm state.Timer, end int64, st *trigger.State, meta paneMeta) error) error {
	for {
		due, err := b.DueTimersIn(domain, t.kgStart, t.kgEnd, upTo, t.e.o.Limits.TimersPerFiring)
		if err != nil || len(due) == 0 {
			return err
		}
		for _, tm := range due {
			if err := b.ClearTimer(tm.TimerID); err != nil {
				return err
			}
			end, err := wire.WindowMaxTimestamp(t.window, tm.Window)
			if err != nil {
				return err
			}
			st, meta, err := t.load(b, tm.KeyGroup, tm.Key, tm.Window)
			if err != nil {
				return err
			}
			if err := fn(tm, end, st, meta); err != nil {
				return err
			}
		}
	}
}
