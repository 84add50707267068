package engine

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/cockroachdb/datadriven"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/encoding/prototext"
)

// runGBKScript runs a script of testdata/gbk or testdata/trigger: one
// GroupByKey subtask (triggered if the "gbk" command gives a trigger)
// stepped an event at a time (gbkTask.step or triggeredGBK.step, no
// goroutine), printing what each event made it emit. Processing time is
// a fake clock at 0 that only "advance" moves. Commands:
//
//	gbk windows=global|fixed|sliding|sessions [senders=N] [lateness=MS] [output-time=end|earliest|latest] [always] [accumulating]
//	<trigger, in protobuf text format (beam_runner_api.proto's Trigger), optional>
//	data from=I        one element per input line: key value timestamp window...
//	                   (a window is "global" or "[start,end)")
//	watermark from=I t=MS
//	advance by=MS      processing time moves; a wake-up the trigger set that
//	                   is due by then fires
//	end from=I         the sender's end of input; after the last, the task finishes
//	tick at=MS         (gbk synthetic: processing time is a TestStream's clock,
//	                   moved only by ticks) a tick of that clock comes; the
//	                   elements given, one per input line, were queued in the
//	                   inbox (from sender 0) before it: they are taken in first,
//	                   then the time moves and the tick is acknowledged
//	                   ("tick <MS> done")
//
// Output lines: "pane <key> <window> ts=<T> <timing> [values]" (values
// sorted, panes sorted within one message; a triggered GroupByKey's also
// give the pane's index and whether it is the window's last),
// "watermark <T>", "end", and "wake-up at <T>" when a triggered
// GroupByKey sets its processing-time wake-up.
func runGBKScript(t *testing.T, path string) {
	var h *gbkHarness
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		ctx := testCtx(t)
		var err error
		if m, ok := scriptMsg(t, d); ok {
			err = h.step(ctx, m)
			if err == nil && m.kind == msgEOI && h.task.allDone() {
				if h.trig != nil {
					err = h.trig.finish(ctx)
				} else {
					err = h.task.finish(ctx)
				}
			}
		} else {
			switch d.Cmd {
			case "gbk":
				h = scriptGBK(t, d)
				return ""
			case "advance":
				var by int64
				d.ScanArgs(t, "by", &by)
				h.clock.Advance(time.Duration(by) * time.Millisecond)
				if h.trig != nil && h.trig.wake > 0 && h.trig.wake <= h.clock.Now().UnixMilli() {
					err = h.trig.step(ctx, trigEvent{wake: true})
				}
			case "tick":
				var done string
				done, err = h.tick(ctx, d)
				if err == nil {
					return h.emitted() + done
				}
			default:
				t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			}
		}
		if err != nil {
			return fmt.Sprintf("error: %v\n", err)
		}
		return h.emitted()
	})
}

// scriptMsg reads the commands of subtask scripts that are messages from
// a sender: "data from=I" (elements, one per input line, see scriptElem),
// "watermark from=I t=MS" and "end from=I". ok is false for another
// command.
func scriptMsg(t *testing.T, d *datadriven.TestData) (m msg, ok bool) {
	switch d.Cmd {
	case "data", "watermark", "end":
	default:
		return msg{}, false
	}
	var i int
	d.ScanArgs(t, "from", &i)
	m.sender = fmt.Sprintf("up/%d", i)
	switch d.Cmd {
	case "data":
		m.kind = msgData
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			m.data = append(m.data, scriptElem(t, line)...)
		}
	case "watermark":
		m.kind = msgWatermark
		d.ScanArgs(t, "t", &m.wm)
	case "end":
		m.kind, m.wm = msgEOI, wire.MaxTimestamp
	}
	return m, true
}

// step gives the subtask one message.
func (h *gbkHarness) step(ctx context.Context, m msg) error {
	if h.trig != nil {
		return h.trig.step(ctx, trigEvent{m: &m})
	}
	return h.task.step(ctx, m)
}

// scriptGBK builds the subtask a "gbk" command describes.
func scriptGBK(t *testing.T, d *datadriven.TestData) *gbkHarness {
	var windows string
	d.ScanArgs(t, "windows", &windows)
	fn, winID := map[string]string{
		"global": plan.URNGlobalWindows, "fixed": plan.URNFixedWindows,
		"sliding": plan.URNSlidingWindows, "sessions": plan.URNSessions,
	}[windows], "iw"
	if fn == "" {
		t.Fatalf("%s: unknown windows %q", d.Pos, windows)
	}
	if windows == "global" {
		winID = "gw"
	}
	ot := pipepb.OutputTime_END_OF_WINDOW
	var ots string
	if d.MaybeScanArgs(t, "output-time", &ots) {
		ot = map[string]pipepb.OutputTime_Enum{"end": pipepb.OutputTime_END_OF_WINDOW,
			"earliest": pipepb.OutputTime_EARLIEST_IN_PANE, "latest": pipepb.OutputTime_LATEST_IN_PANE}[ots]
	}
	ws := windowing(fn, ot)
	d.MaybeScanArgs(t, "lateness", &ws.AllowedLateness)
	if d.HasArg("always") {
		ws.Trigger = &pipepb.Trigger{Trigger: &pipepb.Trigger_Always_{Always: &pipepb.Trigger_Always{}}}
	}
	if d.HasArg("accumulating") {
		ws.AccumulationMode = pipepb.AccumulationMode_ACCUMULATING
	}
	if in := strings.TrimSpace(d.Input); in != "" {
		ws.Trigger = &pipepb.Trigger{}
		if err := prototext.Unmarshal([]byte(in), ws.Trigger); err != nil {
			t.Fatalf("%s: trigger: %v", d.Pos, err)
		}
	}
	senders := 1
	d.MaybeScanArgs(t, "senders", &senders)
	h := buildGBK(t, ws, winID, 1, 0, senders)
	h.clock = clockwork.NewFakeClockAt(time.UnixMilli(0))
	h.task.e.o.Clock = h.clock
	if d.Input != "" {
		tg, err := newTriggeredGBK(h.task)
		if err != nil {
			t.Fatalf("%s: %v", d.Pos, err)
		}
		h.trig = tg
		if d.HasArg("synthetic") {
			tg.sub = &tsSub{ticks: make(chan tsTick), quit: make(chan struct{})}
			tg.subtask.in = make(inbox, 16)
		}
	}
	return h
}

// tick runs the "tick" command: the input's elements are queued, the tick
// comes, and the subtask steps until it has applied it, as its shell
// would.
func (h *gbkHarness) tick(ctx context.Context, d *datadriven.TestData) (string, error) {
	if h.trig == nil || h.trig.sub == nil {
		h.t.Fatalf("%s: tick needs a triggered gbk with synthetic", d.Pos)
	}
	if in := strings.TrimSpace(d.Input); in != "" {
		m := msg{kind: msgData, sender: "up/0"}
		for _, line := range strings.Split(in, "\n") {
			m.data = append(m.data, scriptElem(h.t, line)...)
		}
		h.trig.subtask.in <- m
	}
	tk := tsTick{done: make(chan struct{})}
	d.ScanArgs(h.t, "at", &tk.at)
	if err := h.trig.step(ctx, trigEvent{tick: &tk}); err != nil {
		return "", err
	}
	for h.trig.ticking != nil {
		select {
		case <-tk.done:
			h.t.Fatalf("%s: the tick was acknowledged before it was applied", d.Pos)
		default:
		}
		ev, err := h.trig.next(ctx)
		if err != nil {
			return "", err
		}
		if err := h.trig.step(ctx, ev); err != nil {
			return "", err
		}
	}
	select {
	case <-tk.done:
		return fmt.Sprintf("tick %d done\n", tk.at), nil
	default:
		return "tick not acknowledged\n", nil
	}
}

// scriptElem encodes "key value timestamp window..." as a windowed KV.
func scriptElem(t *testing.T, line string) []byte {
	f := strings.Fields(line)
	if len(f) < 4 {
		t.Fatalf("element %q: want key value timestamp window...", line)
	}
	ts, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatalf("element %q: %v", line, err)
	}
	var windows [][]byte
	for _, w := range f[3:] {
		if w == "global" {
			windows = append(windows, wire.GlobalWindow())
			continue
		}
		var s, e int64
		if _, err := fmt.Sscanf(w, "[%d,%d)", &s, &e); err != nil {
			t.Fatalf("element %q: window %q: %v", line, w, err)
		}
		windows = append(windows, iwin(s, e))
	}
	return kvElem(ts, f[0], f[1], windows...)
}

// renderSent renders the messages a subtask sent: "watermark <T>",
// "barrier <N>", "end", and a data message as one line per element (by
// line), sorted within the message.
func renderSent(t *testing.T, msgs []msg, wv wire.WVCoder, line func(wire.Element) (string, error)) string {
	var b strings.Builder
	for _, m := range msgs {
		switch m.kind {
		case msgWatermark:
			fmt.Fprintf(&b, "watermark %d\n", m.wm)
		case msgEOI:
			b.WriteString("end\n")
		case msgBarrier:
			fmt.Fprintf(&b, "barrier %d\n", m.chk)
		case msgData:
			var lines []string
			err := wv.ForEach(m.data, func(e wire.Element) error {
				l, err := line(e)
				lines = append(lines, l)
				return err
			})
			if err != nil {
				t.Fatalf("decoding output: %v", err)
			}
			sort.Strings(lines)
			for _, l := range lines {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// emitted renders and consumes what the task has emitted since last asked.
func (h *gbkHarness) emitted() string {
	var b strings.Builder
	if h.trig != nil && h.trig.wake != h.wake {
		if h.wake = h.trig.wake; h.wake > 0 {
			fmt.Fprintf(&b, "wake-up at %d\n", h.wake)
		}
	}
	b.WriteString(renderSent(h.t, drain(h.out), h.outWV, func(e wire.Element) (string, error) {
		key, vals, pane, err := readGroup(h.t, h.outWV, e)
		if err != nil {
			return "", err
		}
		line := fmt.Sprintf("pane %s %s ts=%s %s %v", key, winString(h.t, e.Windows[0]), tsString(e.Timestamp), pane.Timing, vals)
		if h.trig != nil {
			line += fmt.Sprintf(" #%d", pane.Index)
			if pane.IsLast {
				line += " last"
			}
		}
		return line, nil
	}))
	return b.String()
}
