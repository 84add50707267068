package metamorphic

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// The steps a generated pipeline is made of. Each is a plain struct of
// parameters with the model's meaning (Eval) and, where a DoFn computes
// something per element, the function that DoFn calls (dofns.go embeds the
// struct in the DoFn, so the DoFn and the model share the per-element
// arithmetic; what they test is the runner around it).

// Events are a source's events: event i (0 <= i < N) has key
// (i*KeyMul+KeyAdd) mod Keys, value (i*ValMul+ValAdd) mod Mod and event
// time Base + i*TsStep + (i*7919 mod (Jitter+1)) (out of order by up to
// Jitter ms).
type Events struct {
	N                    int64
	KeyMul, KeyAdd, Keys int64
	ValMul, ValAdd       int64
	Base, TsStep, Jitter int64
}

// Event returns event i.
func (e Events) Event(i int64) (k, v, t int64) {
	return floorMod(i*e.KeyMul+e.KeyAdd, e.Keys), norm(i*e.ValMul + e.ValAdd), e.Base + i*e.TsStep + floorMod(i*7919, e.Jitter+1)
}

func (e Events) elems() []Elem {
	out := make([]Elem, 0, e.N)
	for i := int64(0); i < e.N; i++ {
		k, v, t := e.Event(i)
		out = append(out, Elem{K: k, V: v, T: t, W: GlobalWindow})
	}
	return out
}

// GenSource is a bounded splittable DoFn over offsets [0, N) emitting
// Events, split into Splits initial restrictions; every SlowEvery-th event
// sleeps SlowMicros µs so that bundles run long enough to be split at run
// time. With SplitErr its restriction tracker refuses every runtime split
// with an error (SplitErrMsg): the job may then fail with that error, or
// succeed, but not hang.
type GenSource struct {
	Events
	Splits, SlowEvery, SlowMicros int64
	SplitErr                      bool
}

// SplitErrMsg is the error of a SplitErr source's tracker.
const SplitErrMsg = "metamorphic: injected split error"

func (GenSource) Kind() string { return "GenSDF" }
func (g GenSource) Eval(_ [][]Elem, _ []Coll) ([][]Elem, error) {
	return [][]Elem{g.elems()}, nil
}
func (g GenSource) size() int64 { return g.N }
func (g GenSource) withSize(n int64) Step {
	g.N = n
	return g
}

// ImpulseSource is a DoFn on beam.Impulse that emits Events.
type ImpulseSource struct{ Events }

func (ImpulseSource) Kind() string { return "ImpulseGen" }
func (g ImpulseSource) Eval(_ [][]Elem, _ []Coll) ([][]Elem, error) {
	return [][]Elem{g.elems()}, nil
}
func (g ImpulseSource) size() int64 { return g.N }
func (g ImpulseSource) withSize(n int64) Step {
	g.N = n
	return g
}

// ImpulseTwins applies one DoFn type (ImpulseSource's) twice, with A's and
// B's parameters, to the same beam.Impulse and flattens the two outputs.
type ImpulseTwins struct{ A, B Events }

func (ImpulseTwins) Kind() string { return "ImpulseTwins" }
func (g ImpulseTwins) Eval(_ [][]Elem, _ []Coll) ([][]Elem, error) {
	return [][]Elem{append(g.A.elems(), g.B.elems()...)}, nil
}
func (g ImpulseTwins) size() int64 { return g.A.N + g.B.N }
func (g ImpulseTwins) withSize(n int64) Step {
	g.A.N, g.B.N = max(1, n/2), max(1, n-n/2)
	return g
}

// CreateSource is beam.CreateList of N int64 values (i*Mul+Add) mod Mod,
// at the minimum event time.
type CreateSource struct{ N, Mul, Add int64 }

func (CreateSource) Kind() string { return "Create" }
func (c CreateSource) Values() []int64 {
	vs := make([]int64, c.N)
	for i := range vs {
		vs[i] = norm(int64(i)*c.Mul + c.Add)
	}
	return vs
}
func (c CreateSource) Eval(_ [][]Elem, _ []Coll) ([][]Elem, error) {
	var out []Elem
	for _, v := range c.Values() {
		out = append(out, Elem{V: v, T: MinTS, W: GlobalWindow})
	}
	return [][]Elem{out}, nil
}
func (c CreateSource) size() int64 { return c.N }
func (c CreateSource) withSize(n int64) Step {
	c.N = n
	return c
}

// mapEach applies f to every element of a single input.
func mapEach(ins [][]Elem, f func(e Elem, emit func(Elem))) [][]Elem {
	var out []Elem
	for _, e := range ins[0] {
		f(e, func(o Elem) { out = append(out, o) })
	}
	return [][]Elem{out}
}

// MapKV maps (k, v) to ((k*KeyMul+KeyAdd) mod KeyMod, v*ValMul+ValAdd);
// KeyMod 0 keeps the key.
type MapKV struct{ KeyMul, KeyAdd, KeyMod, ValMul, ValAdd int64 }

func (MapKV) Kind() string { return "MapKV" }
func (m MapKV) Apply(k, v int64) (int64, int64) {
	if m.KeyMod > 0 {
		k = floorMod(norm(k)*m.KeyMul+m.KeyAdd, m.KeyMod)
	}
	return k, norm(norm(v)*m.ValMul + m.ValAdd)
}
func (m MapKV) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		e.K, e.V = m.Apply(e.K, e.V)
		emit(e)
	}), nil
}

// TwinMap applies one DoFn type (MapKV's) twice, with A's and B's
// parameters, to the same input and flattens the two outputs.
type TwinMap struct{ A, B MapKV }

func (TwinMap) Kind() string { return "TwinMap" }
func (m TwinMap) Eval(ins [][]Elem, c []Coll) ([][]Elem, error) {
	a, _ := m.A.Eval(ins, c)
	b, _ := m.B.Eval(ins, c)
	return [][]Elem{append(a[0], b[0]...)}, nil
}

// Filter keeps elements with (v + k*Salt) mod M != Rem.
type Filter struct{ M, Rem, Salt int64 }

func (Filter) Kind() string           { return "Filter" }
func (f Filter) Keep(k, v int64) bool { return floorMod(norm(v)+norm(k)*f.Salt, f.M) != f.Rem }
func (f Filter) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		if f.Keep(e.K, e.V) {
			emit(e)
		}
	}), nil
}

// Fanout emits 1 + v mod F copies of an element, copy j with value
// v + j*Step.
type Fanout struct{ F, Step int64 }

func (Fanout) Kind() string { return "Fanout" }
func (f Fanout) Copies(v int64) []int64 {
	v = norm(v)
	out := make([]int64, 1+v%f.F)
	for j := range out {
		out[j] = norm(v + int64(j)*f.Step)
	}
	return out
}
func (f Fanout) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		for _, v := range f.Copies(e.V) {
			e.V = v
			emit(e)
		}
	}), nil
}

// Route is a ParDo with two outputs: v mod 3 == 0 goes to the first, 1 to
// the second, 2 to both.
type Route struct{}

func (Route) Kind() string { return "Route" }
func (Route) Routes(v int64) (first, second bool) {
	switch norm(v) % 3 {
	case 0:
		return true, false
	case 1:
		return false, true
	}
	return true, true
}
func (r Route) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	var a, b []Elem
	for _, e := range ins[0] {
		x, y := r.Routes(e.V)
		if x {
			a = append(a, e)
		}
		if y {
			b = append(b, e)
		}
	}
	return [][]Elem{a, b}, nil
}

// DropKey turns KV into its values.
type DropKey struct{}

func (DropKey) Kind() string { return "DropKey" }
func (DropKey) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		e.K = 0
		emit(e)
	}), nil
}

// KeyBy keys a value v by (v*Mul+Add) mod Keys.
type KeyBy struct{ Mul, Add, Keys int64 }

func (KeyBy) Kind() string        { return "KeyBy" }
func (k KeyBy) Key(v int64) int64 { return floorMod(norm(v)*k.Mul+k.Add, k.Keys) }
func (k KeyBy) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		e.K = k.Key(e.V)
		emit(e)
	}), nil
}

// Restamp moves an element (in the global window) forward in event time:
// to max(t, 0) + (v mod Span)*Step.
type Restamp struct{ Span, Step int64 }

func (Restamp) Kind() string            { return "Restamp" }
func (r Restamp) Time(t, v int64) int64 { return max(t, 0) + norm(v)%r.Span*r.Step }
func (r Restamp) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		e.T = r.Time(e.T, e.V)
		emit(e)
	}), nil
}

// WindowInto assigns windows by Fn.
type WindowInto struct{ Fn WinFn }

func (WindowInto) Kind() string { return "WindowInto" }
func (w WindowInto) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return mapEach(ins, func(e Elem, emit func(Elem)) {
		for _, win := range w.Fn.Assign(e.T) {
			e.W = win
			emit(e)
		}
	}), nil
}

// Reshuffle is beam.Reshuffle: the identity.
type Reshuffle struct{}

func (Reshuffle) Kind() string { return "Reshuffle" }
func (Reshuffle) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	return [][]Elem{append([]Elem(nil), ins[0]...)}, nil
}

// Flatten is beam.Flatten of its inputs (which may repeat a collection).
type Flatten struct{}

func (Flatten) Kind() string { return "Flatten" }
func (Flatten) Eval(ins [][]Elem, _ []Coll) ([][]Elem, error) {
	var out []Elem
	for _, in := range ins {
		out = append(out, in...)
	}
	return [][]Elem{out}, nil
}

// Group modes: what the DoFn after a GroupByKey makes of a group's values.
const (
	GroupSum = iota
	GroupCount
	GroupSummary
	GroupMax
	numGroupModes
)

// GroupByKey is beam.GroupByKey followed by a DoFn that reduces each group
// to one value (Mode); the output is at the window's end.
type GroupByKey struct{ Mode int }

func (GroupByKey) Kind() string { return "GroupByKey" }

// Reduce is what the DoFn emits for a group's values.
func (g GroupByKey) Reduce(vs []int64) int64 {
	switch g.Mode {
	case GroupSum:
		var s int64
		for _, v := range vs {
			s = norm(s + norm(v))
		}
		return s
	case GroupCount:
		return int64(len(vs))
	case GroupMax:
		m := int64(math.MinInt64)
		for _, v := range vs {
			m = max(m, v)
		}
		return norm(m)
	}
	return summary(vs)
}
func (g GroupByKey) Eval(ins [][]Elem, c []Coll) ([][]Elem, error) {
	keys, groups := group(ins, c[0].Win.Merging())
	out := make([]Elem, 0, len(keys))
	for _, gk := range keys {
		out = append(out, Elem{K: gk.K, V: g.Reduce(groups[gk][0]), T: gk.W.MaxTimestamp(), W: gk.W})
	}
	return [][]Elem{out}, nil
}

// CoGroupByKey is beam.CoGroupByKey of 2 or 3 inputs followed by a DoFn
// that emits, per key and window, a fingerprint of every input's values.
type CoGroupByKey struct{}

func (CoGroupByKey) Kind() string { return "CoGroupByKey" }

// Reduce fingerprints one group: every input's values in input order.
func (CoGroupByKey) Reduce(vss [][]int64) int64 {
	h := int64(len(vss))
	for _, vs := range vss {
		h = mix(h, summary(vs))
	}
	return h
}
func (g CoGroupByKey) Eval(ins [][]Elem, c []Coll) ([][]Elem, error) {
	keys, groups := group(ins, c[0].Win.Merging())
	out := make([]Elem, 0, len(keys))
	for _, gk := range keys {
		out = append(out, Elem{K: gk.K, V: g.Reduce(groups[gk]), T: gk.W.MaxTimestamp(), W: gk.W})
	}
	return [][]Elem{out}, nil
}

// Combine functions.
const (
	CombineSumPerKey   = iota // stats.SumPerKey: lifted
	CombineMaxPerKey          // beam.CombinePerKey(func(a, b int64) int64): lifted
	CombineMeanPerKey         // stats.MeanPerKey (struct accumulator): not lifted
	CombineRangePerKey        // beam.CombinePerKey(&rangeFn{}) (struct accumulator): not lifted
	CombineCount              // stats.Count of int64 values: KV<value, count>
	CombineGlobalSum          // stats.Sum of int64 values: one per window
	numCombines
)

var combineNames = [...]string{"SumPerKey", "MaxPerKey", "MeanPerKey", "RangePerKey", "Count", "GlobalSum"}

// Combine is one of the combines above; outputs are at the window's end.
type Combine struct{ Fn int }

func (c Combine) Kind() string { return "Combine." + combineNames[c.Fn] }

// RangeAcc is the accumulator of the range combine: not the input's type,
// so weir does not lift it.
type RangeAcc struct{ Min, Max, N int64 }

// RangeAdd, RangeMerge and RangeOut are the range combine's functions.
func RangeAdd(a RangeAcc, v int64) RangeAcc {
	if a.N == 0 {
		return RangeAcc{Min: v, Max: v, N: 1}
	}
	return RangeAcc{Min: min(a.Min, v), Max: max(a.Max, v), N: a.N + 1}
}
func RangeMerge(a, b RangeAcc) RangeAcc {
	switch {
	case a.N == 0:
		return b
	case b.N == 0:
		return a
	}
	return RangeAcc{Min: min(a.Min, b.Min), Max: max(a.Max, b.Max), N: a.N + b.N}
}
func RangeOut(a RangeAcc) int64 { return mix(a.N, norm(a.Max-a.Min)) }

// MeanOut is what the DoFn after stats.MeanPerKey emits for a mean.
func MeanOut(mean float64) int64 { return norm(int64(math.Round(mean * 1000))) }

func (c Combine) Eval(ins [][]Elem, cs []Coll) ([][]Elem, error) {
	in := ins[0]
	if c.Fn == CombineCount || c.Fn == CombineGlobalSum {
		keyed := make([]Elem, len(in))
		for i, e := range in {
			keyed[i] = e
			if c.Fn == CombineCount {
				keyed[i].K = e.V
			} else {
				keyed[i].K = 0
			}
		}
		in = keyed
	}
	keys, groups := group([][]Elem{in}, cs[0].Win.Merging())
	out := make([]Elem, 0, len(keys))
	for _, gk := range keys {
		vs := groups[gk][0]
		var v int64
		switch c.Fn {
		case CombineSumPerKey, CombineGlobalSum:
			for _, x := range vs {
				v += x // wraps as the SDK's int64 sum does
			}
		case CombineMaxPerKey:
			v = math.MinInt64
			for _, x := range vs {
				v = max(v, x)
			}
		case CombineMeanPerKey:
			var sum float64
			for _, x := range vs {
				sum += float64(x)
			}
			v = MeanOut(sum / float64(len(vs)))
		case CombineRangePerKey:
			var a RangeAcc
			for _, x := range vs {
				a = RangeAdd(a, x)
			}
			v = RangeOut(a)
		case CombineCount:
			v = int64(len(vs))
		}
		out = append(out, Elem{K: gk.K, V: v, T: gk.W.MaxTimestamp(), W: gk.W})
	}
	return [][]Elem{out}, nil
}

// Side input kinds.
const (
	SideIter      = iota // beam.SideInput read as func(*int64) bool
	SideSingleton        // the side's sum (stats.Sum) read as a value
	SideMultimap         // a KV side read as func(int64) func(*int64) bool
	numSideKinds
)

var sideNames = [...]string{"iterable", "singleton", "multimap"}

// SideInput maps a main KV element (k, v) in window w to
// (k, v + f(side)) where f reads the side input's window that w maps to:
// the fingerprint of its values (iterable), their sum (singleton), or the
// fingerprint of key k's values (multimap).
type SideInput struct{ Side int }

func (s SideInput) Kind() string { return "SideInput." + sideNames[s.Side] }

// Apply is what the DoFn emits for a main value and the side's reduction.
func (SideInput) Apply(v, f int64) int64 { return norm(norm(v) + norm(f)) }

func (s SideInput) Eval(ins [][]Elem, cs []Coll) ([][]Elem, error) {
	sideFn := cs[1].Win
	byWin := map[Window][]Elem{}
	for _, e := range ins[1] {
		byWin[e.W] = append(byWin[e.W], e)
	}
	cache := map[groupKey]int64{}
	reduce := func(k int64, w Window) (int64, error) {
		sw := sideFn.SideWindow(w)
		ck := groupKey{W: sw}
		if s.Side == SideMultimap {
			ck.K = k
		}
		if f, ok := cache[ck]; ok {
			return f, nil
		}
		var vs []int64
		for _, e := range byWin[sw] {
			if s.Side != SideMultimap || e.K == k {
				vs = append(vs, e.V)
			}
		}
		var f int64
		switch s.Side {
		case SideSingleton:
			if len(vs) == 0 {
				return 0, errors.New("singleton side input is empty")
			}
			for _, v := range vs {
				f += v
			}
		default:
			f = summary(vs)
		}
		cache[ck] = f
		return f, nil
	}
	out := make([]Elem, 0, len(ins[0]))
	for _, e := range ins[0] {
		f, err := reduce(e.K, e.W)
		if err != nil {
			return nil, err
		}
		e.V = s.Apply(e.V, f)
		out = append(out, e)
	}
	return [][]Elem{out}, nil
}

// State kinds of a stateful DoFn.
const (
	StateValue = iota
	StateBag
	StateCombining
	StateMap
	StateSet
	StateOrderedList
	numStateKinds
)

var stateNames = [...]string{"Value", "Bag", "Combining", "Map", "Set", "OrderedList"}

// End-of-window timer modes.
const (
	EndNone  = iota
	EndOnce  // set on a key's first element in the window
	EndEvery // set again on every element
)

// Stateful is a stateful DoFn on KV input: it keeps each key's values in a
// window in state of kind State (and a count), and
//   - Running: emits (k, n) on the key's nth element, at the window's end;
//   - End: an event-time timer at the window's end emits (k, summary of the
//     state) and clears it;
//   - Proc: a processing-time timer an hour ahead (due only when the input
//     ends) does the same, at an unknown event time (global window only);
//   - Tags: every element sets a timer tagged by its value and time at
//     min(t+Delta, window end) (one whose value is a multiple of ClearMod
//     clears it again); a firing emits (k, mix(v, c)) and, while its chain
//     count c > 0, sets the tag's next link Delta later.
//
// The end and tag timers share one event-time family ("ev") unless
// SplitFamilies gives each its own; the processing-time timer has its own.
// KeyMod makes the map and set state's keys (v mod KeyMod); [Lo, Hi) is the
// ordered list's range read.
type Stateful struct {
	State          int
	Running        bool
	End            int
	Proc           bool
	Tags           bool
	SplitFamilies  bool
	Delta, Chain   int64
	ClearMod       int64
	KeyMod, Lo, Hi int64
}

// ProcFamily is the processing-time timer family.
const ProcFamily = "proc"

// EndFamily and TagFamily are the families of the end and tag timers.
func (s Stateful) EndFamily() string {
	if s.SplitFamilies {
		return "end"
	}
	return "ev"
}

func (s Stateful) TagFamily() string {
	if s.SplitFamilies {
		return "tag"
	}
	return "ev"
}

// Families are the timer families the DoFn declares: those it uses (one
// event-time family when it uses none, as a DoFn with OnTimer must have
// one).
func (s Stateful) Families() (event, processing []string) {
	if s.End != EndNone {
		event = append(event, s.EndFamily())
	}
	if s.Tags && (len(event) == 0 || event[0] != s.TagFamily()) {
		event = append(event, s.TagFamily())
	}
	if s.Proc {
		processing = append(processing, ProcFamily)
	}
	if len(event)+len(processing) == 0 {
		event = append(event, "ev")
	}
	return event, processing
}

func (s Stateful) Kind() string { return "Stateful." + stateNames[s.State] }

// OrderedEntry is an entry of the ordered list state: value at sort key.
type OrderedEntry struct{ Key, V int64 }

// StateSummary is what the timers emit for a key's state: the values
// (and event times) the key's elements in the window added.
func (s Stateful) StateSummary(vs, ts []int64) int64 {
	n := int64(len(vs))
	switch s.State {
	case StateValue, StateCombining:
		var sum int64
		for _, v := range vs {
			sum = norm(sum + v)
		}
		return mix(n, sum)
	case StateBag:
		return summary(vs)
	case StateMap:
		m := map[int64]int64{}
		for _, v := range vs {
			m[v%s.KeyMod]++
		}
		return MapSummary(m)
	case StateSet:
		m := map[int64]bool{}
		for _, v := range vs {
			m[v%s.KeyMod] = true
		}
		keys := make([]int64, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		return SetSummary(keys)
	}
	es := make([]OrderedEntry, len(vs))
	for i := range vs {
		es[i] = OrderedEntry{Key: ts[i], V: vs[i]}
	}
	sort.SliceStable(es, func(i, j int) bool { return es[i].Key < es[j].Key })
	var rng []OrderedEntry
	for _, e := range es {
		if e.Key >= s.Lo && e.Key < s.Hi {
			rng = append(rng, e)
		}
	}
	return OrderedSummary(es, rng)
}

// MapSummary fingerprints map state: its size and sum of key*count.
func MapSummary(m map[int64]int64) int64 {
	var h int64
	for k, c := range m {
		h = norm(h + mix(k, c))
	}
	return mix(int64(len(m)), h)
}

// SetSummary fingerprints set state.
func SetSummary(keys []int64) int64 {
	var h int64
	for _, k := range keys {
		h = norm(h + scramble(k))
	}
	return mix(int64(len(keys)), h)
}

// OrderedSummary fingerprints an ordered list read whole (all) and over
// [Lo, Hi) (rng): counts, sums, and whether each came back in sort-key order
// (values with equal keys in any order).
func OrderedSummary(all, rng []OrderedEntry) int64 {
	f := func(es []OrderedEntry) int64 {
		sorted := int64(1)
		var vs []int64
		for i, e := range es {
			if i > 0 && es[i-1].Key > e.Key {
				sorted = 0
			}
			vs = append(vs, e.V)
		}
		return mix(sorted, summary(vs))
	}
	return mix(f(all), f(rng))
}

// TagName is the timer tag of an element (v at t) with c links to go.
func TagName(v, t, c int64) string { return fmt.Sprintf("%d/%d/%d", v, t, c) }

// ParseTag reads a tag back.
func ParseTag(tag string) (v, t, c int64, err error) {
	_, err = fmt.Sscanf(tag, "%d/%d/%d", &v, &t, &c)
	return
}

// TagFire is when a tag timer set at (or from a firing at) t fires in w.
func (s Stateful) TagFire(t int64, w Window) int64 { return min(t+s.Delta, w.MaxTimestamp()) }

// Cleared reports whether an element's tag timer is cleared right after it
// is set.
func (s Stateful) Cleared(v int64) bool { return s.ClearMod > 0 && norm(v)%s.ClearMod == 0 }

func (s Stateful) Eval(ins [][]Elem, cs []Coll) ([][]Elem, error) {
	if cs[0].Win.Merging() {
		return nil, errors.New("stateful DoFns on merging windows are not generated")
	}
	type vt struct{ v, t int64 }
	groups := map[groupKey][]vt{}
	var order []groupKey
	for _, e := range ins[0] {
		gk := groupKey{e.K, e.W}
		if _, ok := groups[gk]; !ok {
			order = append(order, gk)
		}
		groups[gk] = append(groups[gk], vt{norm(e.V), e.T})
	}
	var out []Elem
	for _, gk := range order {
		es := groups[gk]
		end := gk.W.MaxTimestamp()
		if s.Running {
			for n := range es {
				out = append(out, Elem{K: gk.K, V: int64(n + 1), T: end, W: gk.W})
			}
		}
		if s.End != EndNone || s.Proc {
			vs, ts := make([]int64, len(es)), make([]int64, len(es))
			for i, e := range es {
				vs[i], ts[i] = e.v, e.t
			}
			out = append(out, Elem{K: gk.K, V: s.StateSummary(vs, ts), T: end, W: gk.W})
		}
		if s.Tags {
			seen := map[vt]bool{}
			for _, e := range es {
				if seen[e] || s.Cleared(e.v) {
					continue
				}
				seen[e] = true
				at := e.t
				for c := s.Chain; c >= 0; c-- {
					at = s.TagFire(at, gk.W)
					out = append(out, Elem{K: gk.K, V: mix(e.v, c), T: at, W: gk.W})
				}
			}
		}
	}
	return [][]Elem{out}, nil
}
