package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

const testMaxP = 128

// gbkHarness runs one gbkTask subtask: the test feeds its inbox and reads
// what it emits.
type gbkHarness struct {
	t      *testing.T
	task   *gbkTask
	in     inbox
	out    inbox
	outWV  wire.WVCoder
	sender string
	done   chan error
	// dataMsgs counts the data messages finish read.
	dataMsgs int
	// Scripts (gbk_scripts_test.go): the triggered subtask if any, the
	// fake clock of processing time, the wake-up last printed.
	trig  *triggeredGBK
	clock *clockwork.FakeClock
	wake  int64
}

func windowing(fn string, ot pipepb.OutputTime_Enum) *pipepb.WindowingStrategy {
	return &pipepb.WindowingStrategy{WindowFn: &pipepb.FunctionSpec{Urn: fn}, OutputTime: ot}
}

// startGBK builds subtask index of a GBK stage of the given parallelism
// whose input (windowed KV<string,string> in windows of winID) comes from
// `senders` upstream subtasks, and starts it.
func startGBK(t *testing.T, ws *pipepb.WindowingStrategy, winID string, parallelism, index, senders int) *gbkHarness {
	t.Helper()
	h := buildGBK(t, ws, winID, parallelism, index, senders)
	ctx := testCtx(t)
	go func() { h.done <- h.task.run(ctx) }()
	return h
}

// buildGBK is startGBK without the goroutine: the test steps the task.
func buildGBK(t *testing.T, ws *pipepb.WindowingStrategy, winID string, parallelism, index, senders int) *gbkHarness {
	t.Helper()
	coders := testCoders()
	inWV := wire.AddWindowedValue(coders, "kv", winID)
	iter := wire.AddCoder(coders, wire.URNIterable, nil, "str")
	kvOut := wire.AddCoder(coders, wire.URNKV, nil, "str", iter)
	outWV := wire.AddWindowedValue(coders, kvOut, winID)

	s := &plan.Stage{ID: "gbk", Kind: plan.KindGBK, Name: "GroupByKey", Input: "in", Outputs: []string{"out"}, WindowingStrategy: ws}
	p := &plan.Plan{
		Components: &pipepb.Components{Coders: coders},
		Stages:     []*plan.Stage{s},
		PColls: map[string]*plan.PColl{
			"in":  {ID: "in", WireCoder: inWV, ElemCoder: "kv"},
			"out": {ID: "out", WireCoder: outWV, ElemCoder: kvOut, Producer: s},
		},
	}
	e := New(p, Options{Parallelism: parallelism, MaxParallelism: testMaxP, Logger: slog.New(slog.DiscardHandler)})

	h := &gbkHarness{t: t, in: make(inbox), out: make(inbox, 1024), outWV: mustWV(t, coders, outWV),
		sender: fmt.Sprintf("gbk/%d", index), done: make(chan error, 1)}
	o := &output{pcoll: "out", wv: h.outWV, targets: []target{{port: 0, part: plan.Forward, inboxes: []inbox{h.out}}}}
	r := &router{sender: h.sender, subtask: index, maxP: testMaxP, outs: map[string]*output{"out": o}, order: []*output{o}}
	base := subtask{stage: s, index: index, in: h.in, out: r, ports: []portState{{senders: senders}}, e: e}
	task, err := newGBKTask(context.Background(), base, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.task = task
	t.Cleanup(func() { task.db.Close() })
	return h
}

// data sends elements from an upstream subtask. The inbox is unbuffered,
// so a send returns only once the task has taken it.
func (h *gbkHarness) data(from int, elems ...[]byte) {
	h.t.Helper()
	m := msg{kind: msgData, sender: fmt.Sprintf("up/%d", from), data: bytes.Join(elems, nil)}
	if err := h.in.send(testCtx(h.t), m); err != nil {
		h.t.Fatalf("sending data: %v (did the task end early?)", err)
	}
}

func (h *gbkHarness) eoi(from int) {
	h.t.Helper()
	m := msg{kind: msgEOI, sender: fmt.Sprintf("up/%d", from), wm: wire.MaxTimestamp}
	if err := h.in.send(testCtx(h.t), m); err != nil {
		h.t.Fatalf("sending EOI: %v", err)
	}
}

// finish waits for the task to end and renders its groups, one line per
// (key, window): "key window ts=T [values]", values sorted (GroupByKey
// promises no order), lines sorted.
func (h *gbkHarness) finish() []string {
	h.t.Helper()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Fatalf("gbk task: %v", err)
		}
	case <-testCtx(h.t).Done():
		h.t.Fatal("gbk task did not end")
	}
	var ms []msg
	lastWM := wire.MinTimestamp
	for _, m := range drain(h.out) {
		if m.kind == msgWatermark { // forwarded watermarks only ever advance
			if m.wm < lastWM || m.sender != h.sender {
				h.t.Errorf("watermark %d from %s after %d", m.wm, m.sender, lastWM)
			}
			lastWM = m.wm
			continue
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 || ms[len(ms)-1].kind != msgEOI || ms[len(ms)-1].wm != wire.MaxTimestamp || ms[len(ms)-1].sender != h.sender {
		h.t.Fatalf("output does not end with one EOI at +inf from %s: %+v", h.sender, ms)
	}
	wantPane := wire.AppendPane(nil, wire.Pane{IsFirst: true, IsLast: true, Timing: wire.OnTime})
	lines := []string{}
	for _, m := range ms[:len(ms)-1] {
		if m.kind != msgData || m.sender != h.sender {
			h.t.Fatalf("unexpected message %+v", m)
		}
		h.dataMsgs++
		// Each message holds whole elements.
		err := h.outWV.ForEach(m.data, func(e wire.Element) error {
			if len(e.Windows) != 1 {
				h.t.Errorf("group in %d windows, want 1", len(e.Windows))
			}
			if !bytes.Equal(e.Pane, wantPane) {
				h.t.Errorf("pane %x, want on-time first/last %x", e.Pane, wantPane)
			}
			k, v, err := h.outWV.Elem.SplitKV(e.Value)
			if err != nil {
				return err
			}
			key, rest := readStr(h.t, k)
			if len(rest) != 0 {
				h.t.Errorf("key %q has %d trailing bytes", key, len(rest))
			}
			vals := readStrIterable(h.t, v)
			sort.Strings(vals)
			ts := fmt.Sprint(e.Timestamp)
			if e.Timestamp == wire.EndOfGlobalWindow {
				ts = "endOfGlobal"
			}
			lines = append(lines, fmt.Sprintf("%s %s ts=%s %v", key, winString(h.t, e.Windows[0]), ts, vals))
			return nil
		})
		if err != nil {
			h.t.Fatalf("decoding output: %v", err)
		}
	}
	sort.Strings(lines)
	return lines
}

func checkLines(t *testing.T, got, want []string) {
	t.Helper()
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("groups:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestGBKGlobalWindowWaitsForEverySender(t *testing.T) {
	h := startGBK(t, windowing(plan.URNGlobalWindows, pipepb.OutputTime_END_OF_WINDOW), "gw", 1, 0, 2)
	gw := wire.GlobalWindow()
	h.data(0, kvElem(1, "a", "1", gw), kvElem(2, "b", "2", gw), kvElem(3, "a", "3", gw))
	h.eoi(0)
	// Sender 0 is done, sender 1 is not: the task must still take input.
	h.data(1, kvElem(4, "a", "4", gw), kvElem(5, "c", "5", gw))
	h.data(1, kvElem(6, "b", "6", gw))
	h.eoi(1)
	checkLines(t, h.finish(), []string{
		"a global ts=endOfGlobal [1 3 4]",
		"b global ts=endOfGlobal [2 6]",
		"c global ts=endOfGlobal [5]",
	})
}

func TestGBKEmptyInput(t *testing.T) {
	h := startGBK(t, windowing(plan.URNGlobalWindows, pipepb.OutputTime_END_OF_WINDOW), "gw", 1, 0, 3)
	h.eoi(2)
	h.eoi(0)
	h.eoi(1)
	checkLines(t, h.finish(), []string{})
}

func TestGBKFixedWindows(t *testing.T) {
	h := startGBK(t, windowing(plan.URNFixedWindows, pipepb.OutputTime_END_OF_WINDOW), "iw", 1, 0, 1)
	w0, w1, w2 := iwin(0, 10), iwin(10, 20), iwin(-10, 0)
	h.data(0,
		kvElem(0, "a", "a0", w0), kvElem(9, "a", "a9", w0), kvElem(10, "a", "a10", w1),
		kvElem(5, "b", "b5", w0), kvElem(-3, "b", "b-3", w2),
	)
	h.data(0, kvElem(15, "a", "a15", w1), kvElem(1, "b", "b1", w0))
	h.eoi(0)
	checkLines(t, h.finish(), []string{
		"a [0,10) ts=9 [a0 a9]",
		"a [10,20) ts=19 [a10 a15]",
		"b [-10,0) ts=-1 [b-3]",
		"b [0,10) ts=9 [b1 b5]",
	})
}

func TestGBKSlidingWindows(t *testing.T) {
	// Windows of size 10 every 5: an element at 7 is in [0,10) and [5,15),
	// an element at 12 in [5,15) and [10,20); one element names both its
	// windows.
	h := startGBK(t, windowing(plan.URNSlidingWindows, pipepb.OutputTime_END_OF_WINDOW), "iw", 1, 0, 1)
	h.data(0,
		kvElem(7, "k", "x7", iwin(0, 10), iwin(5, 15)),
		kvElem(12, "k", "x12", iwin(5, 15), iwin(10, 20)),
		kvElem(3, "j", "y3", iwin(-5, 5), iwin(0, 10)),
	)
	h.eoi(0)
	checkLines(t, h.finish(), []string{
		"j [-5,5) ts=4 [y3]",
		"j [0,10) ts=9 [y3]",
		"k [0,10) ts=9 [x7]",
		"k [10,20) ts=19 [x12]",
		"k [5,15) ts=14 [x12 x7]",
	})
}

func TestGBKSessionsMerge(t *testing.T) {
	// Session gap 10: each element arrives in [ts, ts+10).
	h := startGBK(t, windowing(plan.URNSessions, pipepb.OutputTime_END_OF_WINDOW), "iw", 1, 0, 2)
	sess := func(ts int64, k, v string) []byte { return kvElem(ts, k, v, iwin(ts, ts+10)) }
	h.data(0,
		sess(0, "a", "a0"), sess(5, "a", "a5"), // overlap → [0,15)
		sess(15, "a", "a15"),                       // touches [0,15) but does not overlap → apart
		sess(40, "a", "a40"), sess(52, "a", "a52"), // chained through a45 → [40,62)
		sess(3, "b", "b3"), // another key: never merged with a's
	)
	h.data(1,
		sess(45, "a", "a45"),
		sess(100, "b", "b100"), kvElem(101, "b", "b101", iwin(101, 104)), // contained → [100,110)
		sess(5, "a", "a5bis"), // same window as a5, from another sender
	)
	h.eoi(1)
	h.eoi(0)
	checkLines(t, h.finish(), []string{
		"a [0,15) ts=14 [a0 a5 a5bis]",
		"a [15,25) ts=24 [a15]",
		"a [40,62) ts=61 [a40 a45 a52]",
		"b [100,110) ts=109 [b100 b101]",
		"b [3,13) ts=12 [b3]",
	})
}

func TestGBKOutputTime(t *testing.T) {
	input := func(h *gbkHarness) {
		h.data(0,
			kvElem(4, "f", "f4", iwin(0, 10)), kvElem(2, "f", "f2", iwin(0, 10)), kvElem(8, "f", "f8", iwin(0, 10)),
			kvElem(13, "f", "f13", iwin(10, 20)),
		)
		h.eoi(0)
	}
	sessionInput := func(h *gbkHarness) {
		h.data(0,
			kvElem(30, "s", "s30", iwin(30, 40)), kvElem(21, "s", "s21", iwin(21, 31)), kvElem(36, "s", "s36", iwin(36, 46)),
			kvElem(33, "s", "s33", iwin(33, 43)), kvElem(90, "s", "s90", iwin(90, 100)),
		)
		h.eoi(0)
	}
	tests := []struct {
		name string
		fn   string
		ot   pipepb.OutputTime_Enum
		feed func(*gbkHarness)
		want []string
	}{
		{"fixed/end of window", plan.URNFixedWindows, pipepb.OutputTime_END_OF_WINDOW, input,
			[]string{"f [0,10) ts=9 [f2 f4 f8]", "f [10,20) ts=19 [f13]"}},
		{"fixed/unspecified is end of window", plan.URNFixedWindows, pipepb.OutputTime_UNSPECIFIED, input,
			[]string{"f [0,10) ts=9 [f2 f4 f8]", "f [10,20) ts=19 [f13]"}},
		{"fixed/earliest", plan.URNFixedWindows, pipepb.OutputTime_EARLIEST_IN_PANE, input,
			[]string{"f [0,10) ts=2 [f2 f4 f8]", "f [10,20) ts=13 [f13]"}},
		{"fixed/latest", plan.URNFixedWindows, pipepb.OutputTime_LATEST_IN_PANE, input,
			[]string{"f [0,10) ts=8 [f2 f4 f8]", "f [10,20) ts=13 [f13]"}},
		{"sessions/end of window", plan.URNSessions, pipepb.OutputTime_END_OF_WINDOW, sessionInput,
			[]string{"s [21,46) ts=45 [s21 s30 s33 s36]", "s [90,100) ts=99 [s90]"}},
		{"sessions/earliest", plan.URNSessions, pipepb.OutputTime_EARLIEST_IN_PANE, sessionInput,
			[]string{"s [21,46) ts=21 [s21 s30 s33 s36]", "s [90,100) ts=90 [s90]"}},
		{"sessions/latest", plan.URNSessions, pipepb.OutputTime_LATEST_IN_PANE, sessionInput,
			[]string{"s [21,46) ts=36 [s21 s30 s33 s36]", "s [90,100) ts=90 [s90]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := startGBK(t, windowing(tc.fn, tc.ot), "iw", 1, 0, 1)
			tc.feed(h)
			checkLines(t, h.finish(), tc.want)
		})
	}
}

func TestGBKOnlyOwnKeyGroups(t *testing.T) {
	// Each of 3 subtasks gets every key; it emits exactly the keys of its
	// key-group range, so together they emit each key once. Merging
	// (sessions) and non-merging windows are grouped by different code.
	const n = 3
	var keys []string
	for i := range 30 {
		keys = append(keys, fmt.Sprintf("key%02d", i))
	}
	for _, tc := range []struct {
		name, fn, winID string
		window          []byte
		line            string // format of a group line, from the key
	}{
		{"global", plan.URNGlobalWindows, "gw", wire.GlobalWindow(), "%[1]s global ts=endOfGlobal [v-%[1]s]"},
		{"sessions", plan.URNSessions, "iw", iwin(0, 10), "%[1]s [0,10) ts=9 [v-%[1]s]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]int{}
			for idx := range n {
				h := startGBK(t, windowing(tc.fn, pipepb.OutputTime_END_OF_WINDOW), tc.winID, n, idx, 1)
				var elems [][]byte
				for _, k := range keys {
					elems = append(elems, kvElem(0, k, "v-"+k, tc.window))
				}
				h.data(0, elems...)
				h.eoi(0)
				got := h.finish()
				var want []string
				for _, k := range keys {
					if state.SubtaskForKeyGroup(state.KeyGroup(str(k), testMaxP), n, testMaxP) == idx {
						want = append(want, fmt.Sprintf(tc.line, k))
					}
				}
				if len(want) == 0 {
					t.Fatalf("subtask %d owns none of the test keys; pick other keys", idx)
				}
				checkLines(t, got, want)
				for _, l := range got {
					seen[strings.Fields(l)[0]]++
				}
			}
			for _, k := range keys {
				if seen[k] != 1 {
					t.Errorf("key %s emitted %d times over all subtasks, want 1", k, seen[k])
				}
			}
		})
	}
}

func TestGBKLargeOutputInWholeChunks(t *testing.T) {
	// More than 1 MiB of groups leaves in several messages, each of whole
	// elements (finish decodes every message on its own).
	h := startGBK(t, windowing(plan.URNGlobalWindows, pipepb.OutputTime_END_OF_WINDOW), "gw", 1, 0, 1)
	big := strings.Repeat("x", 1000)
	var want []string
	for i := range 3000 {
		k := fmt.Sprintf("k%04d", i)
		h.data(0, kvElem(0, k, big, wire.GlobalWindow()), kvElem(0, k, "small", wire.GlobalWindow()))
		want = append(want, fmt.Sprintf("%s global ts=endOfGlobal [small %s]", k, big))
	}
	h.eoi(0)
	got := h.finish()
	checkLines(t, got, want)
	if h.dataMsgs < 3 {
		t.Errorf("3 MB of groups left in %d messages, want them in ~1 MiB chunks", h.dataMsgs)
	}
}
