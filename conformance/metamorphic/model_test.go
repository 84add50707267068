package metamorphic

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func iw(s, e int64) Window { return Window{Start: s, End: e} }

func TestAssignWindows(t *testing.T) {
	for _, c := range []struct {
		fn   WinFn
		t    int64
		want []Window
	}{
		{WinFn{Kind: GlobalWindows}, 5, []Window{GlobalWindow}},
		{WinFn{Kind: FixedWindows, Size: 10}, 0, []Window{iw(0, 10)}},
		{WinFn{Kind: FixedWindows, Size: 10}, 9, []Window{iw(0, 10)}},
		{WinFn{Kind: FixedWindows, Size: 10}, 10, []Window{iw(10, 20)}},
		{WinFn{Kind: FixedWindows, Size: 10}, -1, []Window{iw(-10, 0)}},
		// Sliding: every window of Size starting at a multiple of Period
		// that holds t, latest first, as the Go SDK lists them.
		{WinFn{Kind: SlidingWindows, Size: 10, Period: 5}, 7, []Window{iw(5, 15), iw(0, 10)}},
		{WinFn{Kind: SlidingWindows, Size: 10, Period: 5}, 5, []Window{iw(5, 15), iw(0, 10)}},
		{WinFn{Kind: SlidingWindows, Size: 10, Period: 5}, 4, []Window{iw(0, 10), iw(-5, 5)}},
		{WinFn{Kind: SlidingWindows, Size: 9, Period: 3}, 3, []Window{iw(3, 12), iw(0, 9), iw(-3, 6)}},
		{WinFn{Kind: SlidingWindows, Size: 4, Period: 4}, 6, []Window{iw(4, 8)}},
		{WinFn{Kind: SessionWindows, Size: 7}, 3, []Window{iw(3, 10)}},
	} {
		if got := c.fn.Assign(c.t); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s.Assign(%d) = %v, want %v", c.fn, c.t, got, c.want)
		}
	}
}

func TestSideWindow(t *testing.T) {
	fixed := WinFn{Kind: FixedWindows, Size: 10}
	for _, c := range []struct {
		side WinFn
		main Window
		want Window
	}{
		{WinFn{Kind: GlobalWindows}, iw(0, 10), GlobalWindow},
		{fixed, iw(0, 10), iw(0, 10)},
		{fixed, iw(5, 15), iw(10, 20)}, // a sliding main window maps by its last event time
		{fixed, iw(0, 5), iw(0, 10)},
	} {
		if got := c.side.SideWindow(c.main); got != c.want {
			t.Errorf("%s.SideWindow(%v) = %v, want %v", c.side, c.main, got, c.want)
		}
	}
}

func TestMergeSessions(t *testing.T) {
	for _, c := range []struct {
		in   []Window
		want map[Window]Window
	}{
		{[]Window{iw(0, 5)}, map[Window]Window{iw(0, 5): iw(0, 5)}},
		// Overlapping windows merge into their span, transitively.
		{[]Window{iw(0, 5), iw(4, 9), iw(8, 12)}, map[Window]Window{iw(0, 5): iw(0, 12), iw(4, 9): iw(0, 12), iw(8, 12): iw(0, 12)}},
		// Adjacent windows do not merge (Beam's IntervalWindow.intersects).
		{[]Window{iw(0, 5), iw(5, 10)}, map[Window]Window{iw(0, 5): iw(0, 5), iw(5, 10): iw(5, 10)}},
		// Order does not matter; a window inside another merges into it.
		{[]Window{iw(20, 25), iw(1, 30), iw(40, 41)}, map[Window]Window{iw(1, 30): iw(1, 30), iw(20, 25): iw(1, 30), iw(40, 41): iw(40, 41)}},
		{[]Window{iw(10, 15), iw(0, 11), iw(30, 35), iw(14, 20)}, map[Window]Window{iw(0, 11): iw(0, 20), iw(10, 15): iw(0, 20), iw(14, 20): iw(0, 20), iw(30, 35): iw(30, 35)}},
	} {
		if got := mergeSessions(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("mergeSessions(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestGroupMergesSessionsPerKeyAcrossInputs(t *testing.T) {
	a := []Elem{{K: 1, V: 10, W: iw(0, 5)}, {K: 2, V: 20, W: iw(4, 9)}}
	b := []Elem{{K: 1, V: 30, W: iw(4, 9)}, {K: 1, V: 40, W: iw(20, 25)}}
	keys, groups := group([][]Elem{a, b}, true)
	var got []string
	for _, gk := range keys {
		got = append(got, fmt.Sprintf("%d%v%v", gk.K, gk.W, groups[gk]))
	}
	want := []string{"1[0,9)[[10] [30]]", "1[20,25)[[] [40]]", "2[4,9)[[20] []]"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("group = %v, want %v", got, want)
	}
}

func TestGroupByKeyOutputsAtWindowEnd(t *testing.T) {
	in := []Elem{{K: 1, V: 1, T: 2, W: iw(0, 10)}, {K: 1, V: 2, T: 12, W: iw(10, 20)}, {K: 1, V: 3, T: 5, W: iw(0, 10)}, {K: 2, V: 4, W: GlobalWindow}}
	out, err := GroupByKey{Mode: GroupSum}.Eval([][]Elem{in}, []Coll{{Win: WinFn{Kind: FixedWindows, Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []Elem{{K: 1, V: 4, T: 9, W: iw(0, 10)}, {K: 1, V: 2, T: 19, W: iw(10, 20)}, {K: 2, V: 4, T: EndOfGlobal, W: GlobalWindow}}
	if !reflect.DeepEqual(out[0], want) {
		t.Errorf("GroupByKey = %v, want %v", out[0], want)
	}
}

func TestStatefulModel(t *testing.T) {
	w := iw(0, 100)
	in := []Elem{{K: 1, V: 5, T: 10, W: w}, {K: 1, V: 6, T: 20, W: w}, {K: 1, V: 5, T: 10, W: w}, {K: 1, V: 8, T: 98, W: w}}
	count := func(st Stateful) map[string]int {
		out, err := st.Eval([][]Elem{in}, []Coll{{Win: WinFn{Kind: FixedWindows, Size: 100}}})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, e := range out[0] {
			m[fmt.Sprintf("v=%d t=%d", e.V, e.T)]++
		}
		return m
	}
	// Running counts 1..n, at the window's end.
	if got, want := count(Stateful{State: StateValue, Running: true}), map[string]int{"v=1 t=99": 1, "v=2 t=99": 1, "v=3 t=99": 1, "v=4 t=99": 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("running: %v, want %v", got, want)
	}
	// One summary per key and window, at its end.
	got := count(Stateful{State: StateBag, End: EndEvery})
	if want := map[string]int{fmt.Sprintf("v=%d t=99", summary([]int64{5, 6, 5, 8})): 1}; !reflect.DeepEqual(got, want) {
		t.Errorf("end timer: %v, want %v", got, want)
	}
	// Tag timers: one chain per distinct (value, time), cleared ones none,
	// clamped to the window's end.
	got = count(Stateful{State: StateValue, Tags: true, Delta: 3, Chain: 1, ClearMod: 3})
	want := map[string]int{
		fmt.Sprintf("v=%d t=13", mix(5, 1)): 1, fmt.Sprintf("v=%d t=16", mix(5, 0)): 1,
		fmt.Sprintf("v=%d t=99", mix(8, 1)): 1, fmt.Sprintf("v=%d t=99", mix(8, 0)): 1,
	} // 6 is cleared (6 mod 3 == 0)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tag timers: %v, want %v", got, want)
	}
}

func TestOrderedSummaryNoticesDisorder(t *testing.T) {
	in := []OrderedEntry{{1, 10}, {2, 20}}
	if OrderedSummary(in, nil) == OrderedSummary([]OrderedEntry{{2, 20}, {1, 10}}, nil) {
		t.Error("an ordered list read out of order has the same summary")
	}
	st := Stateful{State: StateOrderedList, Lo: 2, Hi: 3}
	if got, want := st.StateSummary([]int64{20, 10}, []int64{2, 1}), OrderedSummary(in, []OrderedEntry{{2, 20}}); got != want {
		t.Errorf("StateSummary = %d, want %d", got, want)
	}
}

func TestFamilies(t *testing.T) {
	for _, c := range []struct {
		st        Stateful
		ev, proc  []string
		multiples bool
	}{
		{Stateful{Running: true}, []string{"ev"}, nil, false},
		{Stateful{End: EndOnce, Tags: true}, []string{"ev"}, nil, false},
		{Stateful{End: EndOnce, Tags: true, SplitFamilies: true}, []string{"end", "tag"}, nil, true},
		{Stateful{Proc: true}, nil, []string{"proc"}, false},
		{Stateful{Proc: true, Tags: true}, []string{"ev"}, []string{"proc"}, true},
	} {
		ev, proc := c.st.Families()
		if !reflect.DeepEqual(ev, c.ev) || !reflect.DeepEqual(proc, c.proc) {
			t.Errorf("%+v: families %v %v, want %v %v", c.st, ev, proc, c.ev, c.proc)
		}
	}
}

func TestDiff(t *testing.T) {
	want := map[string]map[string]int{"s": {"a": 2, "b": 1}}
	got := map[string]map[string]int{"s": {"a": 1, "c": 1}}
	d := Diff(want, got)
	if len(d) != 1 || !reflect.DeepEqual(d[0].Missing, []string{"a ×1", "b ×1"}) || !reflect.DeepEqual(d[0].Extra, []string{"c ×1"}) {
		t.Fatalf("Diff = %+v", d)
	}
	if s := FormatDiff(d, 1); !strings.Contains(s, "... 1 more") {
		t.Errorf("FormatDiff does not cut at 1:\n%s", s)
	}
	if Diff(want, want) != nil {
		t.Error("Diff of equal outputs is not nil")
	}
}

// TestGenerateIsDeterministic: a seed names one pipeline and one set of
// settings, whose model evaluates; pruning and scaling keep it valid.
func TestGenerateIsDeterministic(t *testing.T) {
	for seed := uint64(1); seed <= 300; seed++ {
		a, sa := Generate(seed, Options{})
		b, sb := Generate(seed, Options{})
		if a.Describe() != b.Describe() || sa != sb {
			t.Fatalf("seed %d generates two pipelines", seed)
		}
		if _, err := a.Expected(); err != nil {
			t.Fatalf("seed %d: model: %v\n%s", seed, err, a.Describe())
		}
		if len(a.Sinks) == 0 {
			t.Fatalf("seed %d has no sink", seed)
		}
		for _, v := range append(prefixVariants(a, sa), smallerVariants(a, sa)...) {
			if _, err := v.Spec.Expected(); err != nil && !strings.Contains(err.Error(), "singleton side input is empty") {
				t.Fatalf("seed %d, %s: model: %v", seed, v.Why, err)
			}
		}
	}
}
