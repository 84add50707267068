package runner_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/teststream"
)

// Scripted scenarios of event time: a TestStream's events go in, and the
// panes each window fires come out, written as
// "[start,end) timing: values" with times in seconds.

// event is one TestStream step: elements at a timestamp, or a watermark.
type event struct {
	at    time.Duration
	elems []string // nil: advance the watermark to at
}

func elems(at time.Duration, vs ...string) event { return event{at: at, elems: vs} }
func watermark(at time.Duration) event           { return event{at: at} }

func keyAll(v string) (string, string) { return "k", v }

// describePane renders one grouped pane.
func describePane(pn typex.PaneInfo, w typex.Window, _ string, vs func(*string) bool) string {
	var got []string
	var v string
	for vs(&v) {
		got = append(got, v)
	}
	sort.Strings(got)
	iw := w.(window.IntervalWindow)
	timing := map[typex.PaneTiming]string{typex.PaneEarly: "early", typex.PaneOnTime: "on time", typex.PaneLate: "late", typex.PaneUnknown: "unknown"}[pn.Timing]
	return fmt.Sprintf("[%d,%d) %s: %s", iw.Start.Milliseconds()/1000, iw.End.Milliseconds()/1000, timing, strings.Join(got, ","))
}

func init() {
	register.Function1x2(keyAll)
	register.Function4x1(describePane)
	register.Iter1[string]()
}

func TestEventTimeScenarios(t *testing.T) {
	s := time.Second
	scenarios := []struct {
		name     string
		lateness time.Duration
		events   []event
		want     []string
	}{{
		name: "a window fires once the watermark passes its end",
		events: []event{
			elems(1*s, "a"), elems(2*s, "b"), elems(12*s, "c"),
			watermark(11 * s), // [0,10) is complete; [10,20) is not
			elems(13*s, "d"),
		},
		want: []string{"[0,10) on time: a,b", "[10,20) on time: c,d"},
	}, {
		name: "data behind the watermark is dropped without allowed lateness",
		events: []event{
			elems(1*s, "a"),
			watermark(15 * s),
			elems(2*s, "late"), // [0,10) ended at 10s: dropped
			elems(16*s, "b"),
		},
		want: []string{"[0,10) on time: a", "[10,20) on time: b"},
	}, {
		name:     "late data within the allowed lateness fires a late pane",
		lateness: 30 * s,
		events: []event{
			elems(1*s, "a"),
			watermark(15 * s),
			elems(2*s, "late"), // 10s + 30s lateness > 15s: kept
		},
		want: []string{"[0,10) on time: a", "[0,10) late: late"},
	}, {
		name: "an empty window fires nothing",
		events: []event{
			elems(25*s, "x"),
			watermark(40 * s),
		},
		want: []string{"[20,30) on time: x"},
	}}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			srv := startWeir(t, 2)
			p, root := beam.NewPipelineWithRoot()
			cfg := teststream.NewConfig()
			for _, ev := range sc.events {
				if ev.elems == nil {
					if err := cfg.AdvanceWatermark(int64(ev.at / time.Millisecond)); err != nil {
						t.Fatal(err)
					}
					continue
				}
				var vs []any
				for _, v := range ev.elems {
					vs = append(vs, v)
				}
				if err := cfg.AddElements(int64(ev.at/time.Millisecond), vs...); err != nil {
					t.Fatal(err)
				}
			}
			opts := []beam.WindowIntoOption{}
			if sc.lateness > 0 {
				opts = append(opts, beam.AllowedLateness(sc.lateness))
			}
			in := beam.WindowInto(root, window.NewFixedWindows(10*s), teststream.Create(root, cfg), opts...)
			panes := beam.ParDo(root, describePane, beam.GroupByKey(root, beam.ParDo(root, keyAll, in)))
			var want []any
			for _, w := range sc.want {
				want = append(want, w)
			}
			passert.Equals(root, beam.WindowInto(root, window.NewGlobalWindows(), panes), want...)
			if err := runOn(t, srv, p, "loopback"); err != nil {
				t.Fatalf("scenario failed: %v", err)
			}
		})
	}
}

// countUntilTimerFn counts a key's elements and, on the first element, sets
// an event-time timer for 5s; when the timer fires it reports how many
// elements had arrived: only those before the watermark passed 5s.
type countUntilTimerFn struct {
	Seen  state.Value[int]
	Fired timers.EventTime
}

func (f *countUntilTimerFn) ProcessElement(sp state.Provider, tp timers.Provider, k, _ string, emit func(string)) {
	n, _, _ := f.Seen.Read(sp)
	if n == 0 {
		f.Fired.Set(tp, mtime.FromMilliseconds(5000).ToTime())
	}
	f.Seen.Write(sp, n+1)
}

func (f *countUntilTimerFn) OnTimer(sp state.Provider, tp timers.Provider, k string, t timers.Context, emit func(string)) {
	n, _, _ := f.Seen.Read(sp)
	emit(fmt.Sprintf("timer %s saw %d", t.Family, n))
}

func init() {
	register.DoFn5x0[state.Provider, timers.Provider, string, string, func(string)](&countUntilTimerFn{})
	register.Emitter1[string]()
}

func TestEventTimeTimerScenario(t *testing.T) {
	srv := startWeir(t, 2)
	p, root := beam.NewPipelineWithRoot()
	cfg := teststream.NewConfig()
	steps := []func() error{
		func() error { return cfg.AddElements(1000, "a") }, // sets the timer for 5s
		func() error { return cfg.AdvanceWatermark(4000) }, // not yet
		func() error { return cfg.AddElements(4500, "b") },
		func() error { return cfg.AdvanceWatermark(6000) }, // fires: a and b seen
		func() error { return cfg.AddElements(7000, "c") }, // after the firing
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	out := beam.ParDo(root, &countUntilTimerFn{Seen: state.MakeValueState[int]("seen"), Fired: timers.InEventTime("fired")},
		beam.ParDo(root, keyAll, teststream.Create(root, cfg)))
	passert.Equals(root, out, "timer fired saw 2")
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("scenario failed: %v", err)
	}
}

// TestTimerSetInThePast: a timer set behind the watermark is not lost; it
// fires before the input that follows the next watermark step.
func TestTimerSetInThePast(t *testing.T) {
	srv := startWeir(t, 2)
	p, root := beam.NewPipelineWithRoot()
	cfg := teststream.NewConfig()
	steps := []func() error{
		func() error { return cfg.AdvanceWatermark(10000) },
		func() error { return cfg.AddElements(12000, "a") }, // sets the timer for 5s: already past
		func() error { return cfg.AdvanceWatermark(11000) },
		func() error { return cfg.AddElements(13000, "b") }, // after the firing
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	out := beam.ParDo(root, &countUntilTimerFn{Seen: state.MakeValueState[int]("seen"), Fired: timers.InEventTime("fired")},
		beam.ParDo(root, keyAll, teststream.Create(root, cfg)))
	passert.Equals(root, out, "timer fired saw 1")
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("scenario failed: %v", err)
	}
}

// countPerWindowFn counts a key's elements per window in value state and
// emits the running count.
type countPerWindowFn struct {
	N state.Value[int]
}

func (f *countPerWindowFn) ProcessElement(sp state.Provider, k, v string, emit func(string)) {
	n, _, _ := f.N.Read(sp)
	f.N.Write(sp, n+1)
	emit(fmt.Sprintf("%s is element %d of its window", v, n+1))
}

func init() {
	register.DoFn4x0[state.Provider, string, string, func(string)](&countPerWindowFn{})
}

// TestExpiredWindowState: once the watermark passes a window's end (no
// allowed lateness) its state is cleared, and input that still arrives for
// that window is dropped rather than reading the cleared state.
func TestExpiredWindowState(t *testing.T) {
	srv := startWeir(t, 2)
	p, root := beam.NewPipelineWithRoot()
	cfg := teststream.NewConfig()
	steps := []func() error{
		func() error { return cfg.AddElements(1000, "a") },
		func() error { return cfg.AddElements(2000, "b") },
		func() error { return cfg.AdvanceWatermark(15000) },   // [0,10) expires
		func() error { return cfg.AddElements(3000, "late") }, // dropped
		func() error { return cfg.AddElements(16000, "c") },   // new window [10,20)
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	in := beam.WindowInto(root, window.NewFixedWindows(10*time.Second), teststream.Create(root, cfg))
	out := beam.ParDo(root, &countPerWindowFn{N: state.MakeValueState[int]("n")}, beam.ParDo(root, keyAll, in))
	passert.Equals(root, beam.WindowInto(root, window.NewGlobalWindows(), out),
		"a is element 1 of its window", "b is element 2 of its window", "c is element 1 of its window")
	if err := runOn(t, srv, p, "loopback"); err != nil {
		t.Fatalf("scenario failed: %v", err)
	}
}
