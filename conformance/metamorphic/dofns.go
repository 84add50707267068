package metamorphic

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/sdf"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/rtrackers/offsetrange"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

// The DoFns of generated pipelines. Each embeds its step's parameters
// (ops.go) and calls the step's per-element function, so that it computes
// what the model computes. Fail makes a DoFn fail its bundle once, on its
// At-th element, so that the bundle is retried.

// failPoint fails a bundle once: the At-th time check runs for Token.
type failPoint struct {
	Token string
	At    int64
}

type failState struct {
	n     atomic.Int64
	fired atomic.Bool
}

// failures counts check calls per token (a run's tokens are unique).
var failures sync.Map // token -> *failState

func (f failPoint) check() error {
	if f.Token == "" {
		return nil
	}
	v, _ := failures.LoadOrStore(f.Token, &failState{})
	st := v.(*failState)
	if st.n.Add(1) == f.At && st.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("metamorphic: injected bundle failure (%s, element %d)", f.Token, f.At)
	}
	return nil
}

// failFired reports whether token's failure fired, and forgets it.
func failFired(token string) bool {
	v, ok := failures.LoadAndDelete(token)
	return ok && v.(*failState).fired.Load()
}

// genSDF is GenSource: a bounded splittable DoFn on an impulse.
type genSDF struct {
	GenSource
	Fail failPoint
}

func (fn *genSDF) CreateInitialRestriction(_ []byte) offsetrange.Restriction {
	return offsetrange.Restriction{Start: 0, End: fn.N}
}

func (fn *genSDF) SplitRestriction(_ []byte, r offsetrange.Restriction) []offsetrange.Restriction {
	return r.EvenSplits(max(fn.Splits, 1))
}

func (fn *genSDF) RestrictionSize(_ []byte, r offsetrange.Restriction) float64 {
	return float64(r.End - r.Start)
}

func (fn *genSDF) CreateTracker(r offsetrange.Restriction) *sdf.LockRTracker {
	if fn.SplitErr {
		return sdf.NewLockRTracker(splitErrTracker{offsetrange.NewTracker(r)})
	}
	return sdf.NewLockRTracker(offsetrange.NewTracker(r))
}

// splitErrTracker refuses every split with an error.
type splitErrTracker struct{ *offsetrange.Tracker }

func (splitErrTracker) TrySplit(float64) (any, any, error) {
	return nil, nil, errors.New(SplitErrMsg)
}

func (fn *genSDF) ProcessElement(rt *sdf.LockRTracker, _ []byte, emit func(beam.EventTime, int64, int64)) error {
	r := rt.GetRestriction().(offsetrange.Restriction)
	for i := r.Start; rt.TryClaim(i); i++ {
		if fn.SlowEvery > 0 && i%fn.SlowEvery == 0 {
			time.Sleep(time.Duration(fn.SlowMicros) * time.Microsecond)
		}
		if err := fn.Fail.check(); err != nil {
			return err
		}
		k, v, t := fn.Event(i)
		emit(mtime.Time(t), k, v)
	}
	return nil
}

// impulseGenFn is ImpulseSource (and each of ImpulseTwins' branches).
type impulseGenFn struct {
	Events
	Fail failPoint
}

func (fn *impulseGenFn) ProcessElement(_ []byte, emit func(beam.EventTime, int64, int64)) error {
	for i := int64(0); i < fn.N; i++ {
		if err := fn.Fail.check(); err != nil {
			return err
		}
		k, v, t := fn.Event(i)
		emit(mtime.Time(t), k, v)
	}
	return nil
}

type mapKVFn struct {
	MapKV
	Fail failPoint
}

func (fn *mapKVFn) ProcessElement(k, v int64, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(fn.Apply(k, v))
	return nil
}

type filterKVFn struct {
	Filter
	Fail failPoint
}

func (fn *filterKVFn) ProcessElement(k, v int64, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	if fn.Keep(k, v) {
		emit(k, v)
	}
	return nil
}

type filterNumFn struct {
	Filter
	Fail failPoint
}

func (fn *filterNumFn) ProcessElement(v int64, emit func(int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	if fn.Keep(0, v) {
		emit(v)
	}
	return nil
}

type fanoutKVFn struct {
	Fanout
	Fail failPoint
}

func (fn *fanoutKVFn) ProcessElement(k, v int64, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	for _, c := range fn.Copies(v) {
		emit(k, c)
	}
	return nil
}

type fanoutNumFn struct {
	Fanout
	Fail failPoint
}

func (fn *fanoutNumFn) ProcessElement(v int64, emit func(int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	for _, c := range fn.Copies(v) {
		emit(c)
	}
	return nil
}

type routeKVFn struct {
	Route
	Fail failPoint
}

func (fn *routeKVFn) ProcessElement(k, v int64, a, b func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	x, y := fn.Routes(v)
	if x {
		a(k, v)
	}
	if y {
		b(k, v)
	}
	return nil
}

type routeNumFn struct {
	Route
	Fail failPoint
}

func (fn *routeNumFn) ProcessElement(v int64, a, b func(int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	x, y := fn.Routes(v)
	if x {
		a(v)
	}
	if y {
		b(v)
	}
	return nil
}

type dropKeyFn struct{ Fail failPoint }

func (fn *dropKeyFn) ProcessElement(_, v int64, emit func(int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(v)
	return nil
}

type keyByFn struct {
	KeyBy
	Fail failPoint
}

func (fn *keyByFn) ProcessElement(v int64, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(fn.Key(v), v)
	return nil
}

type restampKVFn struct {
	Restamp
	Fail failPoint
}

func (fn *restampKVFn) ProcessElement(t beam.EventTime, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(mtime.Time(fn.Time(int64(t), v)), k, v)
	return nil
}

type restampNumFn struct {
	Restamp
	Fail failPoint
}

func (fn *restampNumFn) ProcessElement(t beam.EventTime, v int64, emit func(beam.EventTime, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(mtime.Time(fn.Time(int64(t), v)), v)
	return nil
}

// readAll drains an iterator.
func readAll(it func(*int64) bool) []int64 {
	var vs []int64
	var v int64
	for it(&v) {
		vs = append(vs, v)
	}
	return vs
}

type groupFn struct {
	GroupByKey
	Fail failPoint
}

func (fn *groupFn) ProcessElement(k int64, vs func(*int64) bool, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(k, fn.Reduce(readAll(vs)))
	return nil
}

type cogbk2Fn struct {
	CoGroupByKey
	Fail failPoint
}

func (fn *cogbk2Fn) ProcessElement(k int64, a, b func(*int64) bool, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(k, fn.Reduce([][]int64{readAll(a), readAll(b)}))
	return nil
}

type cogbk3Fn struct {
	CoGroupByKey
	Fail failPoint
}

func (fn *cogbk3Fn) ProcessElement(k int64, a, b, c func(*int64) bool, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(k, fn.Reduce([][]int64{readAll(a), readAll(b), readAll(c)}))
	return nil
}

// maxInt64 is a combine whose accumulator is its input: weir lifts it.
func maxInt64(a, b int64) int64 { return max(a, b) }

// rangeFn is a combine with a struct accumulator: weir does not lift it.
type rangeFn struct{}

func (rangeFn) CreateAccumulator() RangeAcc                    { return RangeAcc{} }
func (rangeFn) AddInput(a RangeAcc, v int64) RangeAcc          { return RangeAdd(a, v) }
func (rangeFn) MergeAccumulators(a, b RangeAcc) RangeAcc       { return RangeMerge(a, b) }
func (rangeFn) ExtractOutput(a RangeAcc) int64                 { return RangeOut(a) }
func meanOut(k int64, m float64) (int64, int64)                { return k, MeanOut(m) }
func countOut(k int64, n int) (int64, int64)                   { return k, int64(n) }
func fixedKey(id string) (int64, string)                       { return 0, id }
func sumCombine(a, b int64) int64                              { return a + b }
func windowOf(w beam.Window) Window                            { return fromBeamWindow(w) }
func beamTime(t int64) time.Time                               { return mtime.Time(t).ToTime() }
func stateErr(what string, err error) error                    { return fmt.Errorf("%s: %w", what, err) }
func countState() state.Value[int64]                           { return state.MakeValueState[int64]("count") }
func sideWindowed(w beam.Window, k, v, f int64) (int64, int64) { return k, SideInput{}.Apply(v, f) }

type sideIterFn struct {
	SideInput
	Fail failPoint
}

func (fn *sideIterFn) ProcessElement(w beam.Window, k, v int64, side func(*int64) bool, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(sideWindowed(w, k, v, summary(readAll(side))))
	return nil
}

type sideSingletonFn struct {
	SideInput
	Fail failPoint
}

func (fn *sideSingletonFn) ProcessElement(w beam.Window, k, v int64, side int64, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(sideWindowed(w, k, v, side))
	return nil
}

type sideMapFn struct {
	SideInput
	Fail failPoint
}

func (fn *sideMapFn) ProcessElement(w beam.Window, k, v int64, side func(int64) func(*int64) bool, emit func(int64, int64)) error {
	if err := fn.Fail.check(); err != nil {
		return err
	}
	emit(sideWindowed(w, k, v, summary(readAll(side(k)))))
	return nil
}

// Stateful DoFns: one type per state kind (their timer fields must not
// share a name with Stateful's parameters, which JSON would then drop), each with the same count, the
// same three timer families and the same behaviour (onElement, onTimer),
// differing only in how they add to, summarise and clear their state.

type stateKind interface {
	add(sp state.Provider, v, t int64) error
	summary(sp state.Provider, n int64) (int64, error)
	clear(sp state.Provider) error
}

// timerFamilies declares a stateful DoFn's timer families: those its
// Stateful parameters use (one PipelineTimer field for all of them, so that
// a DoFn declares no family it does not use).
type timerFamilies struct {
	Event, Processing []string
}

func newTimerFamilies(st Stateful) timerFamilies {
	ev, proc := st.Families()
	return timerFamilies{Event: ev, Processing: proc}
}

func (f timerFamilies) Timers() map[string]timers.TimeDomain {
	m := map[string]timers.TimeDomain{}
	for _, fam := range f.Event {
		m[fam] = timers.EventTimeDomain
	}
	for _, fam := range f.Processing {
		m[fam] = timers.ProcessingTimeDomain
	}
	return m
}

// setTimer sets (or, with clear, clears) a timer firing and holding at at.
func setTimer(tp timers.Provider, family, tag string, at mtime.Time, clear bool) {
	tp.Set(timers.TimerMap{Family: family, Tag: tag, Clear: clear, FireTimestamp: at, HoldTimestamp: at})
}

// statefulCore is what every stateful DoFn has besides its state.
type statefulCore struct {
	p     *Stateful
	fail  failPoint
	count *state.Value[int64]
}

func (c statefulCore) onElement(kind stateKind, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	if err := c.fail.check(); err != nil {
		return err
	}
	v = norm(v)
	n, _, err := c.count.Read(sp)
	if err != nil {
		return stateErr("reading count", err)
	}
	n++
	if err := c.count.Write(sp, n); err != nil {
		return stateErr("writing count", err)
	}
	if err := kind.add(sp, v, int64(ts)); err != nil {
		return stateErr("adding to state", err)
	}
	end := w.MaxTimestamp()
	if c.p.Running {
		emit(end, k, n)
	}
	if c.p.End == EndEvery || (c.p.End == EndOnce && n == 1) {
		setTimer(tp, c.p.EndFamily(), "", end, false)
	}
	if c.p.Proc {
		setTimer(tp, ProcFamily, "", mtime.FromTime(time.Now().Add(time.Hour)), false)
	}
	if c.p.Tags {
		tag := TagName(v, int64(ts), c.p.Chain)
		setTimer(tp, c.p.TagFamily(), tag, mtime.Time(c.p.TagFire(int64(ts), windowOf(w))), false)
		if c.p.Cleared(v) {
			setTimer(tp, c.p.TagFamily(), tag, 0, true)
		}
	}
	return nil
}

func (c statefulCore) onTimer(kind stateKind, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	switch {
	case tc.Tag == "" && (tc.Family == c.p.EndFamily() || tc.Family == ProcFamily):
		n, _, err := c.count.Read(sp)
		if err != nil {
			return stateErr("reading count", err)
		}
		s, err := kind.summary(sp, n)
		if err != nil {
			return stateErr("summarising state", err)
		}
		emit(ts, k, s)
		if err := kind.clear(sp); err != nil {
			return stateErr("clearing state", err)
		}
		return c.count.Clear(sp)
	case tc.Tag != "" && tc.Family == c.p.TagFamily():
		v, t, n, err := ParseTag(tc.Tag)
		if err != nil {
			return fmt.Errorf("timer tag %q: %w", tc.Tag, err)
		}
		emit(ts, k, mix(v, n))
		if n > 0 {
			setTimer(tp, tc.Family, TagName(v, t, n-1), mtime.Time(c.p.TagFire(int64(ts), windowOf(w))), false)
		}
		return nil
	}
	return fmt.Errorf("unexpected timer %+v", tc)
}

type valueStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	Sum    state.Value[int64]
	Timers timerFamilies
}

func (fn *valueStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *valueStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *valueStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *valueStateFn) add(sp state.Provider, v, _ int64) error {
	s, _, err := fn.Sum.Read(sp)
	if err != nil {
		return err
	}
	return fn.Sum.Write(sp, norm(s+v))
}
func (fn *valueStateFn) summary(sp state.Provider, n int64) (int64, error) {
	s, _, err := fn.Sum.Read(sp)
	return mix(n, s), err
}
func (fn *valueStateFn) clear(sp state.Provider) error { return fn.Sum.Clear(sp) }

type bagStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	Bag    state.Bag[int64]
	Timers timerFamilies
}

func (fn *bagStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *bagStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *bagStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *bagStateFn) add(sp state.Provider, v, _ int64) error { return fn.Bag.Add(sp, v) }
func (fn *bagStateFn) summary(sp state.Provider, _ int64) (int64, error) {
	vs, _, err := fn.Bag.Read(sp)
	return summary(vs), err
}
func (fn *bagStateFn) clear(sp state.Provider) error { return fn.Bag.Clear(sp) }

type combiningStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	Sum    state.Combining[int64, int64, int64]
	N      state.Combining[int64, int64, int64]
	Timers timerFamilies
}

func (fn *combiningStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *combiningStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *combiningStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *combiningStateFn) add(sp state.Provider, v, _ int64) error {
	if err := fn.Sum.Add(sp, v); err != nil {
		return err
	}
	return fn.N.Add(sp, 1)
}
func (fn *combiningStateFn) summary(sp state.Provider, _ int64) (int64, error) {
	s, _, err := fn.Sum.Read(sp)
	if err != nil {
		return 0, err
	}
	n, _, err := fn.N.Read(sp)
	return mix(n, norm(s)), err
}
func (fn *combiningStateFn) clear(sp state.Provider) error {
	if err := fn.Sum.Clear(sp); err != nil {
		return err
	}
	return fn.N.Clear(sp)
}

type mapStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	Map    state.Map[int64, int64]
	Timers timerFamilies
}

func (fn *mapStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *mapStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *mapStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *mapStateFn) add(sp state.Provider, v, _ int64) error {
	key := v % fn.KeyMod
	c, _, err := fn.Map.Get(sp, key)
	if err != nil {
		return err
	}
	return fn.Map.Put(sp, key, c+1)
}
func (fn *mapStateFn) summary(sp state.Provider, _ int64) (int64, error) {
	keys, _, err := fn.Map.Keys(sp)
	if err != nil {
		return 0, err
	}
	m := map[int64]int64{}
	for _, k := range keys {
		c, _, err := fn.Map.Get(sp, k)
		if err != nil {
			return 0, err
		}
		m[k] = c
	}
	return MapSummary(m), nil
}
func (fn *mapStateFn) clear(sp state.Provider) error { return fn.Map.Clear(sp) }

type setStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	Set    state.Set[int64]
	Timers timerFamilies
}

func (fn *setStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *setStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *setStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *setStateFn) add(sp state.Provider, v, _ int64) error { return fn.Set.Add(sp, v%fn.KeyMod) }
func (fn *setStateFn) summary(sp state.Provider, _ int64) (int64, error) {
	keys, _, err := fn.Set.Keys(sp)
	return SetSummary(keys), err
}
func (fn *setStateFn) clear(sp state.Provider) error { return fn.Set.Clear(sp) }

type orderedListStateFn struct {
	Stateful
	Fail   failPoint
	Count  state.Value[int64]
	List   state.OrderedList[int64]
	Timers timerFamilies
}

func (fn *orderedListStateFn) core() statefulCore {
	return statefulCore{&fn.Stateful, fn.Fail, &fn.Count}
}
func (fn *orderedListStateFn) ProcessElement(w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k, v int64, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onElement(fn, w, ts, sp, tp, k, v, emit)
}
func (fn *orderedListStateFn) OnTimer(ctx context.Context, w beam.Window, ts beam.EventTime, sp state.Provider, tp timers.Provider, k int64, tc timers.Context, emit func(beam.EventTime, int64, int64)) error {
	return fn.core().onTimer(fn, w, ts, sp, tp, k, tc, emit)
}
func (fn *orderedListStateFn) add(sp state.Provider, v, t int64) error { return fn.List.Add(sp, t, v) }
func (fn *orderedListStateFn) summary(sp state.Provider, _ int64) (int64, error) {
	entries := func(vs []state.OrderedListValue[int64]) []OrderedEntry {
		out := make([]OrderedEntry, len(vs))
		for i, e := range vs {
			out[i] = OrderedEntry{Key: e.SortKey, V: e.Value}
		}
		return out
	}
	all, _, err := fn.List.Read(sp)
	if err != nil {
		return 0, err
	}
	rng, _, err := fn.List.ReadRange(sp, fn.Lo, fn.Hi)
	if err != nil {
		return 0, err
	}
	return OrderedSummary(entries(all), entries(rng)), nil
}
func (fn *orderedListStateFn) clear(sp state.Provider) error { return fn.List.Clear(sp) }

// newStatefulFn returns the DoFn of st with its state and timers declared.
func newStatefulFn(st Stateful, fail failPoint) any {
	count, fams := countState(), newTimerFamilies(st)
	switch st.State {
	case StateValue:
		return &valueStateFn{Stateful: st, Fail: fail, Count: count, Sum: state.MakeValueState[int64]("sum"), Timers: fams}
	case StateBag:
		return &bagStateFn{Stateful: st, Fail: fail, Count: count, Bag: state.MakeBagState[int64]("bag"), Timers: fams}
	case StateCombining:
		return &combiningStateFn{Stateful: st, Fail: fail, Count: count,
			Sum:    state.MakeCombiningState[int64, int64, int64]("sum", sumCombine),
			N:      state.MakeCombiningState[int64, int64, int64]("n", sumCombine),
			Timers: fams}
	case StateMap:
		return &mapStateFn{Stateful: st, Fail: fail, Count: count, Map: state.MakeMapState[int64, int64]("map"), Timers: fams}
	case StateSet:
		return &setStateFn{Stateful: st, Fail: fail, Count: count, Set: state.MakeSetState[int64]("set"), Timers: fams}
	}
	return &orderedListStateFn{Stateful: st, Fail: fail, Count: count, List: state.MakeOrderedListState[int64]("list"), Timers: fams}
}

func init() {
	register.DoFn3x1[*sdf.LockRTracker, []byte, func(beam.EventTime, int64, int64), error](&genSDF{})
	register.DoFn2x1[[]byte, func(beam.EventTime, int64, int64), error](&impulseGenFn{})
	register.DoFn3x1[int64, int64, func(int64, int64), error](&mapKVFn{})
	register.DoFn3x1[int64, int64, func(int64, int64), error](&filterKVFn{})
	register.DoFn2x1[int64, func(int64), error](&filterNumFn{})
	register.DoFn3x1[int64, int64, func(int64, int64), error](&fanoutKVFn{})
	register.DoFn2x1[int64, func(int64), error](&fanoutNumFn{})
	register.DoFn4x1[int64, int64, func(int64, int64), func(int64, int64), error](&routeKVFn{})
	register.DoFn3x1[int64, func(int64), func(int64), error](&routeNumFn{})
	register.DoFn3x1[int64, int64, func(int64), error](&dropKeyFn{})
	register.DoFn2x1[int64, func(int64, int64), error](&keyByFn{})
	register.DoFn4x1[beam.EventTime, int64, int64, func(beam.EventTime, int64, int64), error](&restampKVFn{})
	register.DoFn3x1[beam.EventTime, int64, func(beam.EventTime, int64), error](&restampNumFn{})
	register.DoFn3x1[int64, func(*int64) bool, func(int64, int64), error](&groupFn{})
	register.DoFn4x1[int64, func(*int64) bool, func(*int64) bool, func(int64, int64), error](&cogbk2Fn{})
	register.DoFn5x1[int64, func(*int64) bool, func(*int64) bool, func(*int64) bool, func(int64, int64), error](&cogbk3Fn{})
	register.DoFn5x1[beam.Window, int64, int64, func(*int64) bool, func(int64, int64), error](&sideIterFn{})
	register.DoFn5x1[beam.Window, int64, int64, int64, func(int64, int64), error](&sideSingletonFn{})
	register.DoFn5x1[beam.Window, int64, int64, func(int64) func(*int64) bool, func(int64, int64), error](&sideMapFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&valueStateFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&bagStateFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&combiningStateFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&mapStateFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&setStateFn{})
	register.DoFn7x1[beam.Window, beam.EventTime, state.Provider, timers.Provider, int64, int64, func(beam.EventTime, int64, int64), error](&orderedListStateFn{})
	register.Combiner3[RangeAcc, int64, int64](&rangeFn{})
	register.Function2x1(maxInt64)
	register.Function2x1(sumCombine)
	register.Function2x2(meanOut)
	register.Function2x2(countOut)
	register.Function1x2(fixedKey)
	register.Emitter1[int64]()
	register.Emitter1[string]()
	register.Emitter2[int64, int64]()
	register.Emitter2[beam.EventTime, int64]()
	register.Emitter3[beam.EventTime, int64, int64]()
	register.Iter1[int64]()
	register.Iter1[string]()
	beam.RegisterType(reflect.TypeOf((*RangeAcc)(nil)).Elem())
}
