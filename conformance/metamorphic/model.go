package metamorphic

import (
	"fmt"
	"math"
	"sort"
)

// Event times are milliseconds, as Beam's mtime counts them. The bounds are
// Beam's (mtime.MinTimestamp, mtime.MaxTimestamp, mtime.EndOfGlobalWindowTime);
// dofns_test.go checks that they agree.
const (
	MinTS       int64 = math.MinInt64 / 1000
	MaxTS       int64 = math.MaxInt64 / 1000
	EndOfGlobal int64 = MaxTS - 24*3600*1000
)

// TimeBound is the largest event time the generator lets a collection carry
// into WindowInto or a restamp: timestamps the model made (not the end of
// the global window).
const TimeBound int64 = 1 << 40

// Mod bounds every value the pipelines compute: values stay in [0, Mod), so
// sums of a million of them fit an int64 and float64 means are exact.
const Mod int64 = math.MaxInt32 // 2^31-1, a prime

// Window is one Beam window: the global window, or [Start, End) in ms.
type Window struct {
	Global     bool
	Start, End int64
}

// GlobalWindow is the single window of the global WindowFn.
var GlobalWindow = Window{Global: true}

// MaxTimestamp is the window's last event time (Beam's MaxTimestamp).
func (w Window) MaxTimestamp() int64 {
	if w.Global {
		return EndOfGlobal
	}
	return w.End - 1
}

func (w Window) String() string {
	if w.Global {
		return "G"
	}
	return fmt.Sprintf("[%d,%d)", w.Start, w.End)
}

// WinKind is a WindowFn's kind.
type WinKind uint8

const (
	GlobalWindows WinKind = iota
	FixedWindows
	SlidingWindows
	SessionWindows
)

// WinFn is a WindowFn with its parameters (ms): Size of fixed and sliding
// windows, Period of sliding ones, the gap of sessions in Size.
type WinFn struct {
	Kind         WinKind
	Size, Period int64
}

func (f WinFn) String() string {
	switch f.Kind {
	case FixedWindows:
		return fmt.Sprintf("fixed(%dms)", f.Size)
	case SlidingWindows:
		return fmt.Sprintf("sliding(%dms every %dms)", f.Size, f.Period)
	case SessionWindows:
		return fmt.Sprintf("sessions(gap %dms)", f.Size)
	}
	return "global"
}

// Merging reports whether the WindowFn merges windows (sessions).
func (f WinFn) Merging() bool { return f.Kind == SessionWindows }

// Assign returns the windows an element at event time t is assigned to, as
// the Go SDK's WindowInto assigns them (exec/window.go); sessions get their
// unmerged proto-window [t, t+gap).
func (f WinFn) Assign(t int64) []Window {
	switch f.Kind {
	case FixedWindows:
		start := t - floorMod(t, f.Size)
		return []Window{{Start: start, End: start + f.Size}}
	case SlidingWindows:
		var ws []Window
		last := t - floorMod(t, f.Period)
		for start := last; start > t-f.Size; start -= f.Period {
			ws = append(ws, Window{Start: start, End: start + f.Size})
		}
		return ws
	case SessionWindows:
		return []Window{{Start: t, End: t + f.Size}}
	}
	return []Window{GlobalWindow}
}

// SideWindow is the window of a side input windowed by f that a main input
// window maps to: the window f assigns to the main window's last event time
// (the first of them, for sliding windows; the generator uses only global and
// fixed side inputs).
func (f WinFn) SideWindow(main Window) Window {
	if f.Kind == GlobalWindows {
		return GlobalWindow
	}
	return f.Assign(main.MaxTimestamp())[0]
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// Elem is one element of a collection in one window (the model keeps
// elements exploded per window, as every grouping and every window-observing
// DoFn sees them). K is 0 in a collection without keys.
type Elem struct {
	K, V, T int64
	W       Window
}

// mergeSessions maps each of ws to its merged session window: windows that
// overlap (start < end of the union so far; adjacent ones do not) merge into
// their span, as Beam's MergeOverlappingIntervalWindows does.
func mergeSessions(ws []Window) map[Window]Window {
	sorted := append([]Window(nil), ws...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Start != sorted[j].Start {
			return sorted[i].Start < sorted[j].Start
		}
		return sorted[i].End < sorted[j].End
	})
	out := make(map[Window]Window, len(ws))
	var members []Window
	var cur Window
	flush := func() {
		for _, m := range members {
			out[m] = cur
		}
		members = members[:0]
	}
	for i, w := range sorted {
		if i > 0 && w.Start < cur.End {
			cur.End = max(cur.End, w.End)
			members = append(members, w)
			continue
		}
		if i > 0 {
			flush()
		}
		cur = w
		members = append(members, w)
	}
	if len(sorted) > 0 {
		flush()
	}
	return out
}

// groupKey is a key in a window: a GroupByKey's group.
type groupKey struct {
	K int64
	W Window
}

// group returns the inputs' elements grouped by key and window, merging
// session windows per key across all inputs when merging; vals[i] are the
// values from input i. Groups come out sorted by key and window.
func group(inputs [][]Elem, merging bool) ([]groupKey, map[groupKey][][]int64) {
	var merged map[int64]map[Window]Window
	if merging {
		perKey := map[int64][]Window{}
		seen := map[groupKey]bool{}
		for _, in := range inputs {
			for _, e := range in {
				gk := groupKey{e.K, e.W}
				if !seen[gk] {
					seen[gk] = true
					perKey[e.K] = append(perKey[e.K], e.W)
				}
			}
		}
		merged = make(map[int64]map[Window]Window, len(perKey))
		for k, ws := range perKey {
			merged[k] = mergeSessions(ws)
		}
	}
	groups := map[groupKey][][]int64{}
	for i, in := range inputs {
		for _, e := range in {
			w := e.W
			if merging {
				w = merged[e.K][w]
			}
			gk := groupKey{e.K, w}
			vs := groups[gk]
			if vs == nil {
				vs = make([][]int64, len(inputs))
				groups[gk] = vs
			}
			vs[i] = append(vs[i], e.V)
		}
	}
	keys := make([]groupKey, 0, len(groups))
	for gk := range groups {
		keys = append(keys, gk)
	}
	sort.Slice(keys, func(i, j int) bool { return lessGroup(keys[i], keys[j]) })
	return keys, groups
}

func lessGroup(a, b groupKey) bool {
	if a.K != b.K {
		return a.K < b.K
	}
	if a.W.Global != b.W.Global {
		return a.W.Global
	}
	if a.W.Start != b.W.Start {
		return a.W.Start < b.W.Start
	}
	return a.W.End < b.W.End
}

// Arithmetic on values, shared by the model and the DoFns: everything stays
// in [0, Mod).

// norm reduces x into [0, Mod).
func norm(x int64) int64 { return floorMod(x, Mod) }

// mix combines two values in [0, Mod) into one, order-sensitively.
func mix(a, b int64) int64 { return norm(norm(a)*1_000_003 + norm(b)) }

// mixAll folds mix over xs.
func mixAll(xs ...int64) int64 {
	var h int64 = 17
	for _, x := range xs {
		h = mix(h, x)
	}
	return h
}

// scramble is a fixed bijective-ish hash of v into [0, Mod), summed over a
// multiset to fingerprint it independently of order.
func scramble(v int64) int64 {
	x := uint64(v) * 0x9E3779B97F4A7C15
	x ^= x >> 29
	return int64(x % uint64(Mod))
}

// summary fingerprints a multiset of values: count, sum and scrambled sum.
func summary(vs []int64) int64 {
	var sum, h int64
	for _, v := range vs {
		sum = norm(sum + v)
		h = norm(h + scramble(v))
	}
	return mixAll(int64(len(vs)), sum, h)
}
