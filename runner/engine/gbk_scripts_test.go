package engine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/cockroachdb/datadriven"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
)

// TestGBKScripts runs the scripts in testdata/gbk: one GroupByKey subtask
// stepped a message at a time (gbkTask.step, no goroutine), printing what
// each message made it emit. Commands:
//
//	gbk windows=global|fixed|sliding|sessions [senders=N] [lateness=MS] [output-time=end|earliest|latest] [always]
//	data from=I        one element per input line: key value timestamp window...
//	                   (a window is "global" or "[start,end)")
//	watermark from=I t=MS
//	end from=I         the sender's end of input; after the last, the task finishes
//
// Output lines: "pane <key> <window> ts=<T> <timing> [values]" (values
// sorted, panes sorted within one message), "watermark <T>", "end".
func TestGBKScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/gbk", func(t *testing.T, path string) {
		var h *gbkHarness
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			ctx := testCtx(t)
			from := func() string {
				var i int
				d.ScanArgs(t, "from", &i)
				return fmt.Sprintf("up/%d", i)
			}
			var err error
			switch d.Cmd {
			case "gbk":
				h = scriptGBK(t, d)
				return ""
			case "data":
				var data []byte
				for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					data = append(data, scriptElem(t, line)...)
				}
				err = h.task.step(ctx, msg{kind: msgData, sender: from(), data: data})
			case "watermark":
				var ts int64
				d.ScanArgs(t, "t", &ts)
				err = h.task.step(ctx, msg{kind: msgWatermark, sender: from(), wm: ts})
			case "end":
				err = h.task.step(ctx, msg{kind: msgEOI, sender: from(), wm: wire.MaxTimestamp})
				if err == nil && h.task.allDone() {
					err = h.task.finish(ctx)
				}
			default:
				t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
			}
			if err != nil {
				return fmt.Sprintf("error: %v\n", err)
			}
			return h.emitted()
		})
	})
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
	senders := 1
	d.MaybeScanArgs(t, "senders", &senders)
	return buildGBK(t, ws, winID, 1, 0, senders)
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

// emitted renders and consumes what the task has emitted since last asked.
func (h *gbkHarness) emitted() string {
	var b strings.Builder
	for _, m := range drain(h.out) {
		switch m.kind {
		case msgWatermark:
			fmt.Fprintf(&b, "watermark %d\n", m.wm)
		case msgEOI:
			b.WriteString("end\n")
		case msgData:
			var lines []string
			err := h.outWV.ForEach(m.data, func(e wire.Element) error {
				key, vals, pane, err := readGroup(h.t, h.outWV, e)
				if err != nil {
					return err
				}
				ts := fmt.Sprint(e.Timestamp)
				if e.Timestamp == wire.EndOfGlobalWindow {
					ts = "endOfGlobal"
				}
				lines = append(lines, fmt.Sprintf("pane %s %s ts=%s %s %v", key, winString(h.t, e.Windows[0]), ts, pane.Timing, vals))
				return nil
			})
			if err != nil {
				h.t.Fatalf("decoding output: %v", err)
			}
			sort.Strings(lines)
			for _, l := range lines {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}
