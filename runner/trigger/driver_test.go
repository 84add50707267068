package trigger

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
)

// driver is a miniature of the GroupByKey that drives a Machine, for one
// key: it assigns elements to fixed or global windows, buffers panes,
// drops elements for closed or expired windows, keeps those for windows
// left open by a processing-time firing until the window's end, expires
// windows with their final pane, and runs processing-time timers from
// wakeAt. It follows the
// package's caller contract and Beam's ReduceFnRunner, so a script of
// TestStream-like events yields the panes a Beam runner would emit.
//
// Script tokens, separated by spaces:
//
//	1@1000        element 1 at event time 1000 (ms)
//	1,2,3@1000    elements 1, 2, 3 at 1000: one bundle (TestStream AddElements)
//	wm=11000      advance the input watermark
//	pt+=5000      advance processing time (TestStream AdvanceProcessingTime)
//	end           the input ends: the watermark goes to +inf
//
// Each emitted pane is rendered as "<window> {<values>} <cause>", where the
// window is "G" (global) or "[0s,10s)", and the cause is what made it fire:
// "elem 2", "wm 11000", "pt 5100" or "end"; " last" marks the final pane
// of a window (the trigger closed it, or the window expired).
type driver struct {
	t        *testing.T
	m        *Machine
	size     int64 // fixed window size in ms; 0 for the global window
	lateness int64 // allowed lateness in ms
	bundles  bool  // deliver a bundle's elements in one OnEvent call

	wm, pt  int64
	wins    map[int64]*dwin
	panes   []string
	dropped int
}

// dwin is one window of the single key.
type dwin struct {
	start, maxTs int64
	st           State
	buf          []int
	wake         int64
	eowSeen      bool
}

func newDriver(t *testing.T, m *Machine, size int64) *driver {
	return &driver{t: t, m: m, size: size, wm: int64(mtime.MinTimestamp), wins: map[int64]*dwin{}}
}

func (d *driver) window(ts int64) *dwin {
	start, maxTs := int64(mtime.MinTimestamp), int64(mtime.EndOfGlobalWindowTime)
	if d.size > 0 {
		start = ts - ((ts%d.size)+d.size)%d.size
		maxTs = start + d.size - 1
	}
	w := d.wins[start]
	if w == nil {
		w = &dwin{start: start, maxTs: maxTs}
		d.wins[start] = w
	}
	return w
}

func (d *driver) label(w *dwin) string {
	if d.size == 0 {
		return "G"
	}
	return fmt.Sprintf("[%ds,%ds)", w.start/1000, (w.maxTs+1)/1000)
}

func (d *driver) expired(w *dwin) bool { return d.wm > w.maxTs+d.lateness }

// call runs OnEvent for w and emits what it says.
func (d *driver) call(w *dwin, elements int, cause string) {
	in := Input{Elements: elements, Watermark: d.wm, ProcessingTime: d.pt, WindowEnd: w.maxTs}
	if d.wm > w.maxTs {
		w.eowSeen = true
	}
	fire, finished, wake := d.m.OnEvent(&w.st, in)
	if finished != w.st.Finished() {
		d.t.Fatalf("%s: OnEvent reported finished=%v but State.Finished()=%v", cause, finished, w.st.Finished())
	}
	if err := d.m.Check(&w.st); err != nil {
		d.t.Fatalf("%s: state fails Check: %v", cause, err)
	}
	// Every state must survive persistence.
	got, err := Decode(w.st.Encode())
	if err != nil || fmt.Sprint(got.cells) != fmt.Sprint(w.st.cells) {
		d.t.Fatalf("%s: state %v does not round-trip: %v, %v", cause, w.st.cells, got, err)
	}
	w.wake = wake
	if fire {
		d.emit(w, cause, w.st.Closed())
	}
}

// emit outputs w's pane if it is not empty (EMIT_IF_NONEMPTY), discarding.
func (d *driver) emit(w *dwin, cause string, last bool) {
	if len(w.buf) == 0 {
		return
	}
	var vs []string
	for _, v := range w.buf {
		vs = append(vs, strconv.Itoa(v))
	}
	p := fmt.Sprintf("%s {%s} %s", d.label(w), strings.Join(vs, " "), cause)
	if last {
		p += " last"
	}
	d.panes = append(d.panes, p)
	w.buf = nil
}

func (d *driver) sorted() []*dwin {
	var ws []*dwin
	for _, w := range d.wins {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].start < ws[j].start })
	return ws
}

func (d *driver) elements(vals []int, ts int64, bundle bool) {
	w := d.window(ts)
	if d.expired(w) || w.st.Closed() {
		d.dropped += len(vals)
		return
	}
	if w.st.Finished() {
		// Left open by a processing-time firing: kept for the window's end.
		w.buf = append(w.buf, vals...)
		return
	}
	if bundle {
		w.buf = append(w.buf, vals...)
		d.call(w, len(vals), fmt.Sprintf("elem %d", vals[len(vals)-1]))
		return
	}
	for _, v := range vals {
		switch {
		case w.st.Closed():
			d.dropped++
		case w.st.Finished():
			w.buf = append(w.buf, v)
		default:
			w.buf = append(w.buf, v)
			d.call(w, 1, fmt.Sprintf("elem %d", v))
		}
	}
}

func (d *driver) watermark(to int64, cause string) {
	if to <= d.wm {
		return
	}
	d.wm = to
	for _, w := range d.sorted() {
		switch {
		case d.expired(w):
			// With allowed lateness, the end-of-window timer fires before
			// the garbage-collection timer, even when the watermark jumps
			// past both.
			if d.lateness > 0 && !w.eowSeen && !w.st.Finished() {
				d.call(w, 0, cause)
			}
			// Garbage collection: the final pane, without asking the trigger.
			if !w.st.Closed() {
				d.emit(w, cause, true)
			}
			delete(d.wins, w.start)
		case d.wm > w.maxTs && !w.eowSeen && !w.st.Finished():
			d.call(w, 0, cause)
		case d.wm > w.maxTs && !w.eowSeen && !w.st.Closed():
			// An open window's end: what arrived after its trigger finished.
			w.eowSeen = true
			d.emit(w, cause, false)
		}
	}
}

func (d *driver) processingTime(to int64) {
	d.pt = to
	for _, w := range d.sorted() {
		if w.wake != 0 && w.wake <= d.pt && !w.st.Finished() {
			d.call(w, 0, fmt.Sprintf("pt %d", d.pt))
		}
	}
}

// run executes a script and returns the panes emitted.
func (d *driver) run(script string) []string {
	for _, tok := range strings.Fields(script) {
		switch {
		case tok == "end":
			d.watermark(int64(mtime.MaxTimestamp), "end")
		case strings.HasPrefix(tok, "wm="):
			d.watermark(d.num(tok[3:]), "wm "+tok[3:])
		case strings.HasPrefix(tok, "pt+="):
			d.processingTime(addSat(d.pt, d.num(tok[4:])))
		case strings.Contains(tok, "@"):
			vs, at, _ := strings.Cut(tok, "@")
			var vals []int
			for _, v := range strings.Split(vs, ",") {
				vals = append(vals, int(d.num(v)))
			}
			d.elements(vals, d.num(at), d.bundles)
		default:
			d.t.Fatalf("bad script token %q", tok)
		}
	}
	return d.panes
}

func (d *driver) num(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == math.MinInt64 {
		d.t.Fatalf("bad number %q in script", s)
	}
	return n
}
