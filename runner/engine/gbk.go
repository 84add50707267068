package engine

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// gbkTask groups its key-group range of a GroupByKey's input. Input is
// buffered in Pebble; groups are emitted when the input ends.
type gbkTask struct {
	subtask
	db         *state.DB
	buf        *state.GroupBuffer
	in         wire.WVCoder
	window     *wire.Coder
	merging    bool
	outputTime pipepb.OutputTime_Enum
	kgStart    int
	kgEnd      int
	pane       []byte
	dropped    int  // late elements past the allowed lateness
	always     bool // the Always trigger: every element fires at once
	earlyPane  []byte
	// restored watermarks (from a checkpoint): input, windows fired up to
	wmIn, wmFired int64
}

func newGBKTask(ctx context.Context, base subtask, dir string, cache *state.Cache) (*gbkTask, error) {
	p := base.e.plan
	s := base.stage
	c, err := wire.Build(p.Components.GetCoders(), p.PColls[s.Input].WireCoder)
	if err != nil {
		return nil, fmt.Errorf("group by key %q: %w", s.Name, err)
	}
	wv, err := wire.NewWV(c)
	if err != nil {
		return nil, fmt.Errorf("group by key %q: %w", s.Name, err)
	}
	db, err := base.openState(ctx, dir, cache, false)
	if err != nil {
		return nil, fmt.Errorf("group by key %q: opening state: %w", s.Name, err)
	}
	n := base.e.parallelism(s)
	start, end := state.KeyGroupRange(base.index, n, base.e.o.MaxParallelism)
	return &gbkTask{
		subtask:    base,
		db:         db,
		buf:        db.GroupBuffer([]byte("g")),
		in:         wv,
		window:     wv.Window,
		merging:    s.WindowingStrategy.GetWindowFn().GetUrn() == plan.URNSessions,
		outputTime: s.WindowingStrategy.GetOutputTime(),
		kgStart:    start,
		kgEnd:      end,
		pane:       wire.AppendPane(nil, wire.Pane{IsFirst: true, IsLast: true, Timing: wire.OnTime}),
		always:     s.WindowingStrategy.GetTrigger().GetAlways() != nil && s.WindowingStrategy.GetWindowFn().GetUrn() != plan.URNSessions,
		earlyPane:  wire.AppendPane(nil, wire.Pane{Timing: wire.Early}),
		wmIn:       wire.MinTimestamp,
		wmFired:    wire.MinTimestamp,
	}, nil
}

// restore takes back the watermarks of a checkpoint (the buffer is in
// Pebble).
func (t *gbkTask) restore(st *taskState) error {
	t.wmIn, t.wmFired = st.InWM, st.Fired
	t.dropped = int(st.Dropped)
	return nil
}

// run is the subtask's goroutine: it takes its inbox's messages one at a
// time to step, then finishes.
func (t *gbkTask) run(ctx context.Context) error {
	defer t.db.Close()
	return runSteps(ctx, t.more, t.recv, t.step, t.finish)
}

// more says an input has not ended.
func (t *gbkTask) more() bool { return !t.allDone() }

// step takes one message: a barrier snapshots the subtask; a watermark
// that moves the input's fires the windows it closes and is passed on;
// data is buffered (a late element fires its window's late pane at once,
// one past the allowed lateness is dropped; the Always trigger fires
// every element as its own pane).
func (t *gbkTask) step(ctx context.Context, m msg) error {
	switch m.kind {
	case msgBarrier:
		// What the buffer holds in its batch is part of the checkpoint: it
		// goes into Pebble before the snapshot.
		if err := t.buf.Flush(); err != nil {
			return fmt.Errorf("%s: checkpoint %d: %w", t.name(), m.chk, err)
		}
		st := &taskState{InWM: t.wmIn, Fired: t.wmFired, Dropped: int64(t.dropped)}
		return t.snapshot(ctx, m.chk, t.db, st, nil)
	case msgData:
		return t.takeData(ctx, m)
	}
	if !t.ports[m.port].observe(m) {
		return nil
	}
	if wm := t.ports[0].watermark(); wm > t.wmIn && wm < wire.MaxTimestamp {
		t.wmIn = wm
		if err := t.fire(ctx, t.wmFired, wm); err != nil {
			return err
		}
		t.wmFired = wm
		return t.out.control(ctx, msgWatermark, wm)
	}
	return nil
}

// takeData buffers a message of input.
func (t *gbkTask) takeData(ctx context.Context, m msg) error {
	maxP := t.e.o.MaxParallelism
	lateness := t.stage.WindowingStrategy.GetAllowedLateness()
	in, fired := t.wmIn, t.wmFired
	late := false
	var early []byte
	var n int64
	err := t.in.ForEach(m.data, func(e wire.Element) error {
		n++
		k, v, err := t.in.Elem.SplitKV(e.Value)
		if err != nil {
			return err
		}
		kg := state.KeyGroup(k, maxP)
		for _, w := range e.Windows {
			if t.merging {
				if err := t.buf.Add(kg, k, w, e.Timestamp, v); err != nil {
					return err
				}
				continue
			}
			maxTs, err := wire.WindowMaxTimestamp(t.window, w)
			if err != nil {
				return err
			}
			if t.always {
				// Always fires on every element: it is its own pane.
				g := &group{window: w, min: e.Timestamp, max: e.Timestamp, values: [][]byte{v}}
				var err error
				if early, err = t.appendGroup(early, k, g, t.earlyPane); err != nil {
					return err
				}
				continue
			}
			if maxTs <= fired {
				if maxTs+lateness < in {
					t.dropped++ // past allowed lateness: dropped
					continue
				}
				late = true
			}
			if err := t.buf.Add(kg, state.WindowKey(maxTs, w), k, e.Timestamp, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: buffering input: %w", t.name(), err)
	}
	t.e.countInput(t.stage, n)
	if len(early) > 0 && len(t.stage.Outputs) > 0 {
		if err := t.out.emit(ctx, t.stage.Outputs[0], early); err != nil {
			return err
		}
	}
	if late {
		return t.fire(ctx, fired, fired)
	}
	return nil
}

// finish emits what is left once every input has ended, and ends the
// output.
func (t *gbkTask) finish(ctx context.Context) error {
	if err := t.emitAll(ctx, t.wmFired); err != nil {
		return err
	}
	if t.dropped > 0 {
		t.e.o.Logger.Info("dropped late data", "stage", t.name(), "elements", t.dropped)
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
}

// fire emits, for non-merging windows, every window whose max timestamp
// is at or before upTo, and forgets it. Windows after prev fire on time;
// the others only hold late data.
func (t *gbkTask) fire(ctx context.Context, prev, upTo int64) error {
	if t.merging || len(t.stage.Outputs) == 0 {
		return nil
	}
	outPC := t.stage.Outputs[0]
	var out []byte
	lateP := wire.AppendPane(nil, wire.Pane{IsFirst: false, IsLast: false, Timing: wire.Late, Index: 1, OnTimeIndex: 1})
	err := t.buf.ScanPairs(t.kgStart, t.kgEnd, upTo, func(_ int, first []byte, recs []state.Record) error {
		maxTs, window, err := state.SplitWindowKey(first)
		if err != nil {
			return err
		}
		pane := t.pane
		if maxTs <= prev {
			pane = lateP
		}
		g := &group{window: window, min: recs[0].Timestamp, max: recs[0].Timestamp}
		for _, r := range recs {
			g.values = append(g.values, r.Value)
			g.min, g.max = min(g.min, r.Timestamp), max(g.max, r.Timestamp)
		}
		if out, err = t.appendGroup(out, recs[0].Window, g, pane); err != nil {
			return err
		}
		out, err = t.emitFull(ctx, outPC, out)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: firing windows: %w", t.name(), err)
	}
	if err := t.out.emit(ctx, outPC, out); err != nil {
		return err
	}
	if err := t.buf.DeleteBefore(t.kgStart, t.kgEnd, upTo); err != nil {
		return fmt.Errorf("%s: forgetting fired windows: %w", t.name(), err)
	}
	return nil
}

// emitFull sends out once it holds 7/8 of the message bound, and returns
// what is left to fill: below the bound, so that the element that fills a
// chunk seldom makes the router cut the message again.
func (t *gbkTask) emitFull(ctx context.Context, pc string, out []byte) ([]byte, error) {
	if len(out) < t.out.maxMsgBytes()*7/8 {
		return out, nil
	}
	return nil, t.out.emit(ctx, pc, out)
}

// appendGroup encodes one grouped output element.
func (t *gbkTask) appendGroup(out, key []byte, g *group, pane []byte) ([]byte, error) {
	ts := g.min
	switch t.outputTime {
	case pipepb.OutputTime_LATEST_IN_PANE:
		ts = g.max
	case pipepb.OutputTime_EARLIEST_IN_PANE:
	default:
		var err error
		if ts, err = wire.WindowMaxTimestamp(t.window, g.window); err != nil {
			return nil, err
		}
	}
	kv := append(append([]byte(nil), key...), wire.AppendIterable(nil, g.values)...)
	return wire.AppendWindowedValue(out, ts, [][]byte{g.window}, pane, kv), nil
}

// group is the values of one key in one (possibly merged) window.
type group struct {
	window   []byte
	min, max int64
	values   [][]byte
}

func (t *gbkTask) emitAll(ctx context.Context, fired int64) error {
	if len(t.stage.Outputs) == 0 {
		return t.buf.Clear()
	}
	if !t.merging {
		if err := t.fire(ctx, fired, wire.MaxTimestamp); err != nil {
			return err
		}
		return t.buf.Clear()
	}
	outPC := t.stage.Outputs[0]
	var out []byte
	err := t.buf.ScanKeys(t.kgStart, t.kgEnd, func(_ int, key []byte, recs []state.Record) error {
		groups, err := t.groups(recs)
		if err != nil {
			return err
		}
		for _, g := range groups {
			if out, err = t.appendGroup(out, key, g, t.pane); err != nil {
				return err
			}
		}
		out, err = t.emitFull(ctx, outPC, out)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: emitting groups: %w", t.name(), err)
	}
	if err := t.out.emit(ctx, outPC, out); err != nil {
		return err
	}
	return t.buf.Clear()
}

// groups splits one key's records (ordered by window) into groups,
// merging overlapping session windows.
func (t *gbkTask) groups(recs []state.Record) ([]*group, error) {
	var gs []*group
	for _, r := range recs {
		if n := len(gs); n > 0 && bytes.Equal(gs[n-1].window, r.Window) {
			g := gs[n-1]
			g.values = append(g.values, r.Value)
			g.min, g.max = min(g.min, r.Timestamp), max(g.max, r.Timestamp)
			continue
		}
		gs = append(gs, &group{window: r.Window, min: r.Timestamp, max: r.Timestamp, values: [][]byte{r.Value}})
	}
	if !t.merging || len(gs) < 2 {
		return gs, nil
	}
	type iv struct {
		start, end int64
		g          *group
	}
	ivs := make([]iv, len(gs))
	for i, g := range gs {
		s, e, err := wire.ReadIntervalWindow(g.window)
		if err != nil {
			return nil, fmt.Errorf("merging session windows: %w", err)
		}
		ivs[i] = iv{s, e, g}
	}
	sort.SliceStable(ivs, func(i, j int) bool { return ivs[i].start < ivs[j].start })
	var merged []*group
	cur := ivs[0]
	flush := func() {
		cur.g.window = wire.AppendIntervalWindow(nil, cur.start, cur.end)
		merged = append(merged, cur.g)
	}
	for _, n := range ivs[1:] {
		if n.start < cur.end {
			cur.end = max(cur.end, n.end)
			cur.g.values = append(cur.g.values, n.g.values...)
			cur.g.min, cur.g.max = min(cur.g.min, n.g.min), max(cur.g.max, n.g.max)
			continue
		}
		flush()
		cur = n
	}
	flush()
	return merged, nil
}

// stateDB is the DB the task owns (stateOwner).
func (t *gbkTask) stateDB() *state.DB { return t.db }
