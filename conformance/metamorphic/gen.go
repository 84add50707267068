package metamorphic

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Known weir bugs the generator can steer around, each behind a named
// switch so that the rest of the harness keeps running while one is being
// fixed. All false: every shape is generated. While a switch is true the
// shapes it names are not generated (or their symptom is a note).
const (
	// knownBugFlattenBranches: one DoFn applied twice to the same Impulse,
	// the two outputs flattened, delivers only one branch (never seen).
	knownBugFlattenBranches = false
	// knownBugEndOfGlobalTimers (fixed in ad124bc): event-time timers at
	// the end of the global window let the watermark reach it.
	knownBugEndOfGlobalTimers = false
	// knownBugTimerFamiliesFnAPI (fixed): a stateful DoFn with more than
	// one timer family hung over the Fn API: the Go SDK counts one is_last
	// per transform (sdkharness.timerStreamsToEnd).
	knownBugTimerFamiliesFnAPI = false
	// knownBugLatePaneAtWindowEnd (fixed): a side-input ParDo's parked
	// main input held its watermark at the element's timestamp, not just
	// below it, so a GroupByKey downstream fired a window ending there
	// before the element reached it (sdkTask.mainWatermark).
	knownBugLatePaneAtWindowEnd = false
	// knownBugFinalizeLost (fixed): bundles handed to a checkpoint that
	// never completed (aborted, or pending when the job ended) were never
	// finalized (coordinator.rollForwardLocked, jobDone).
	knownBugFinalizeLost = false
	// knownBugGBKCheckpointUnflushed (fixed in b992621): a GroupByKey's
	// checkpoint lacked the records still pending in its
	// state.GroupBuffer. While true, only faults that restore from no
	// completed checkpoint are drawn.
	knownBugGBKCheckpointUnflushed = false
)

// Settings are the engine settings of one run.
type Settings struct {
	Parallelism int
	InProcess   bool
	// Limits (0: weir's default).
	TimersPerFiring, BundleBytes, StatefulBundleBytes, BundleOutputBytes, MessageBytes, InboxSize, StateChunkBytes int
	SplitCheck, BundleTime                                                                                         time.Duration
	// Checkpoint is the checkpoint interval (0: no checkpoints).
	Checkpoint time.Duration
	// Fault, with checkpoints, is the fault point (engine.Fault*) where the
	// job fails the FaultN-th time it is reached ("" none).
	Fault  string
	FaultN int64
	// FailOp, if >= 0, is the op whose DoFn fails its bundle (once) on its
	// FailAt-th element: the bundle is retried.
	FailOp int
	FailAt int64
	// RestoreWorkers bounds the subtasks that restore at once (0: weir's
	// default).
	RestoreWorkers int
	// Kill, with checkpoints and no Fault, runs the job in a child process,
	// kills it with SIGKILL once a checkpoint has completed, and resumes it
	// in a new one (--resume), as a user restarts a crashed program.
	Kill bool
}

func (s Settings) String() string {
	var parts []string
	add := func(name string, v any, set bool) {
		if set {
			parts = append(parts, fmt.Sprintf("%s=%v", name, v))
		}
	}
	parts = append(parts, fmt.Sprintf("parallelism=%d", s.Parallelism), fmt.Sprintf("inprocess=%v", s.InProcess))
	add("TimersPerFiring", s.TimersPerFiring, s.TimersPerFiring > 0)
	add("BundleBytes", s.BundleBytes, s.BundleBytes > 0)
	add("StatefulBundleBytes", s.StatefulBundleBytes, s.StatefulBundleBytes > 0)
	add("BundleOutputBytes", s.BundleOutputBytes, s.BundleOutputBytes > 0)
	add("MessageBytes", s.MessageBytes, s.MessageBytes > 0)
	add("InboxSize", s.InboxSize, s.InboxSize > 0)
	add("StateChunkBytes", s.StateChunkBytes, s.StateChunkBytes > 0)
	add("SplitCheck", s.SplitCheck, s.SplitCheck > 0)
	add("BundleTime", s.BundleTime, s.BundleTime > 0)
	add("checkpoint", s.Checkpoint, s.Checkpoint > 0)
	add("fault", fmt.Sprintf("%s#%d", s.Fault, s.FaultN), s.Fault != "")
	add("fail", fmt.Sprintf("op%d@%d", s.FailOp, s.FailAt), s.FailOp >= 0)
	add("RestoreWorkers", s.RestoreWorkers, s.RestoreWorkers > 0)
	add("kill", "-9+resume", s.Kill)
	return strings.Join(parts, " ")
}

// Fault points, as engine.Fault* names them (metamorphic_test.go checks).
var faultPoints = []string{"bundle", "snapshot", "upload", "before-commit", "after-commit"}

// Options shape generation.
type Options struct {
	// Big allows sizes up to a million elements and keys.
	Big bool
}

// gen is one generation in progress: the spec so far and the model's
// elements of every collection, so that choices can depend on contents.
type gen struct {
	r     *rand.Rand
	o     Options
	set   Settings
	spec  *Spec
	elems map[int][]Elem
	used  map[int]bool // consumed by some op
}

// Generate builds the pipeline and settings of seed.
func Generate(seed uint64, o Options) (*Spec, Settings) {
	g := &gen{
		r:     rand.New(rand.NewPCG(seed, 0x6d65746120776569)),
		o:     o,
		spec:  &Spec{Seed: seed},
		elems: map[int][]Elem{},
		used:  map[int]bool{},
	}
	set := g.settings()
	// Drawn apart from g.r, so that seeds keep the pipelines they had
	// before kills were drawn.
	if set.Checkpoint > 0 && set.Fault == "" && rand.New(rand.NewPCG(seed, 0x6b696c6c)).IntN(2) == 0 {
		set.Kill = true
	}
	if set.Checkpoint > 0 {
		set.RestoreWorkers = rand.New(rand.NewPCG(seed, 0x7265737472)).IntN(4) // drawn apart too
	}
	g.set = set
	total := g.size()
	nsrc := 1 + g.r.IntN(3)
	for i := 0; i < nsrc; i++ {
		n := max(1, total/int64(nsrc))
		if i == 0 && set.Checkpoint > 0 {
			// Parallel subtasks split the source's time between them, and a
			// checkpoint takes a few hundred ms whatever its interval.
			d := max(time.Duration(max(set.FaultN, 1))*900*time.Millisecond, time.Duration(4+3*set.FaultN)*set.Checkpoint)
			g.pacedSource(n, d*time.Duration(set.Parallelism))
			continue
		}
		g.source(n)
	}
	steps := 2 + g.r.IntN(9)
	for i, tries := 0, 0; i < steps && tries < 200; tries++ {
		if g.step() {
			i++
		}
	}
	g.sinks()
	if g.r.IntN(4) == 0 && len(g.spec.Ops) > 0 {
		set.FailOp = g.r.IntN(len(g.spec.Ops))
		set.FailAt = 1 + g.r.Int64N(20)
	}
	return g.spec, set
}

func (g *gen) settings() Settings {
	r := g.r
	s := Settings{Parallelism: 1 + r.IntN(4), InProcess: r.IntN(2) == 0, FailOp: -1}
	small := func() bool { return r.IntN(2) == 0 }
	if small() {
		s.TimersPerFiring = []int{1, 2, 3, 5, 10000}[r.IntN(5)]
	}
	if small() {
		s.BundleBytes = 64 << r.IntN(11)
	}
	if small() {
		s.StatefulBundleBytes = 64 << r.IntN(11)
	}
	if small() {
		s.BundleOutputBytes = 64 << r.IntN(11)
	}
	if small() {
		s.MessageBytes = 100 << r.IntN(7)
	}
	if small() {
		s.InboxSize = 1 + r.IntN(16)
	}
	if small() {
		s.StateChunkBytes = 16 << r.IntN(9)
	}
	if small() {
		s.SplitCheck = time.Duration(1+r.IntN(20)) * time.Millisecond
	}
	if small() {
		s.BundleTime = time.Duration(5+r.IntN(496)) * time.Millisecond
	}
	if r.IntN(4) == 0 {
		s.Checkpoint = time.Duration(10+r.IntN(91)) * time.Millisecond
		if r.IntN(2) == 0 {
			s.Fault = faultPoints[r.IntN(len(faultPoints))]
			s.FaultN = 1 + r.Int64N(2)
			if s.Fault == "bundle" {
				s.FaultN = 1 + r.Int64N(5)
			}
			if knownBugGBKCheckpointUnflushed {
				s.Fault = faultPoints[r.IntN(3)] // bundle, snapshot, upload
				s.FaultN = 1
				if s.Fault == "bundle" {
					s.FaultN = 1 + r.Int64N(3)
				}
			}
		}
	}
	return s
}

// size draws the number of source elements.
func (g *gen) size() int64 {
	r := g.r
	if g.o.Big && r.IntN(3) == 0 {
		return 10_000 + r.Int64N(990_001)
	}
	switch x := r.IntN(100); {
	case x < 25:
		return 1 + r.Int64N(10)
	case x < 65:
		return 10 + r.Int64N(300)
	case x < 93:
		return 300 + r.Int64N(2700)
	}
	return 3000 + r.Int64N(7000)
}

// keys draws a key count for n elements: from one key to more keys than
// elements.
func (g *gen) keys(n int64) int64 {
	switch g.r.IntN(4) {
	case 0:
		return 1 + g.r.Int64N(3)
	case 1:
		return max(1, n/10)
	case 2:
		return max(1, n)
	}
	if g.o.Big {
		return 1 + g.r.Int64N(1_000_000)
	}
	return max(1, 2*n)
}

func (g *gen) events(n int64) Events {
	r := g.r
	keys := g.keys(n)
	e := Events{
		N:      n,
		KeyMul: 1 + r.Int64N(1000), KeyAdd: r.Int64N(1000), Keys: keys,
		ValMul: 1 + r.Int64N(100_000), ValAdd: r.Int64N(1000),
		Base:   r.Int64N(1_000_000),
		TsStep: r.Int64N(20),
	}
	if keys > 1 && r.IntN(3) == 0 {
		e.KeyMul = 1 // keys (i+a) mod K: every key
	}
	if r.IntN(3) == 0 {
		e.Jitter = r.Int64N(500)
	}
	return e
}

// add appends an op, its output collections and their model elements.
func (g *gen) add(step Step, in []int, outs ...Coll) []int {
	ins := make([][]Elem, len(in))
	inColls := make([]Coll, len(in))
	for i, c := range in {
		ins[i], inColls[i] = g.elems[c], g.spec.Colls[c]
		g.used[c] = true
	}
	res, err := step.Eval(ins, inColls)
	if err != nil {
		panic(fmt.Sprintf("generator made an op the model refuses: %s: %v", step.Kind(), err))
	}
	ids := make([]int, len(outs))
	for i, c := range outs {
		c.ID = len(g.spec.Colls)
		g.spec.Colls = append(g.spec.Colls, c)
		g.elems[c.ID] = res[i]
		ids[i] = c.ID
	}
	g.spec.Ops = append(g.spec.Ops, Op{ID: len(g.spec.Ops), Step: step, In: in, Out: ids})
	return ids
}

var global = WinFn{Kind: GlobalWindows}

func (g *gen) source(n int64) {
	kv := Coll{Type: KVType, Win: global, TsKnown: true, Bounded: true}
	switch x := g.r.IntN(10); {
	case x < 5:
		g.add(g.genSource(n), nil, kv)
	case x < 7:
		c := CreateSource{N: n, Mul: 1 + g.r.Int64N(1000), Add: g.r.Int64N(1000)}
		num := Coll{Type: NumType, Win: global, TsKnown: true, Bounded: true}
		ids := g.add(c, nil, num)
		if g.r.IntN(3) > 0 { // give the values event times
			g.add(Restamp{Span: 1 + g.r.Int64N(1000), Step: 1 + g.r.Int64N(100)}, ids, num)
		}
	case x < 9 || knownBugFlattenBranches:
		g.add(ImpulseSource{g.events(n)}, nil, kv)
	default:
		a := g.events(max(1, n/2))
		b := a
		if g.r.IntN(2) == 0 {
			b = g.events(max(1, n-n/2))
		}
		g.add(ImpulseTwins{A: a, B: b}, nil, kv)
	}
}

func (g *gen) genSource(n int64) GenSource {
	s := GenSource{Events: g.events(n), Splits: 1 + g.r.Int64N(8)}
	if g.r.IntN(3) == 0 {
		s.SlowEvery = 1 + g.r.Int64N(50)
		s.SlowMicros = 1 + g.r.Int64N(20)
	}
	s.SplitErr = g.r.IntN(25) == 0
	return s
}

// pacedSource is a generator that runs for at least d, so that checkpoints
// happen while it runs: a drawn fault must fire.
func (g *gen) pacedSource(n int64, d time.Duration) {
	s := g.genSource(max(n, 200))
	s.SlowEvery, s.SplitErr = 1, false
	s.SlowMicros = max(20, d.Microseconds()/s.N)
	g.add(s, nil, Coll{Type: KVType, Win: global, TsKnown: true, Bounded: true})
}

// pick returns a collection satisfying ok, preferring ones nothing consumes
// yet and recent ones; -1 if none does.
func (g *gen) pick(ok func(c Coll) bool) int {
	var leaves, all []int
	for _, c := range g.spec.Colls {
		if !ok(c) {
			continue
		}
		all = append(all, c.ID)
		if !g.used[c.ID] {
			leaves = append(leaves, c.ID)
		}
	}
	if len(leaves) > 0 && g.r.IntN(4) > 0 {
		return leaves[g.r.IntN(len(leaves))]
	}
	if len(all) == 0 {
		return -1
	}
	return all[len(all)-1-g.r.IntN(min(len(all), 4))]
}

func isKV(c Coll) bool { return c.Type == KVType }

// groupable reports whether c may feed a grouping (GroupByKey,
// CoGroupByKey, Combine, a side input or a stateful DoFn).
func groupable(c Coll) bool { return !knownBugLatePaneAtWindowEnd || !c.TimerOut }
func isNum(c Coll) bool     { return c.Type == NumType }

// timesIn reports whether every element of c has an event time in
// [lo, hi), and their range.
func (g *gen) timesIn(c int, lo, hi int64) (bool, int64, int64) {
	mn, mx := int64(MaxTS), int64(MinTS)
	for _, e := range g.elems[c] {
		if e.T < lo || e.T >= hi {
			return false, 0, 0
		}
		mn, mx = min(mn, e.T), max(mx, e.T)
	}
	return true, mn, mx
}

// step adds one random op; false if the one drawn does not apply.
func (g *gen) step() bool {
	r := g.r
	same := func(c Coll) func(Coll) bool {
		return func(o Coll) bool { return o.Type == c.Type && o.Win == c.Win }
	}
	switch r.IntN(20) {
	case 0, 1:
		in := g.pick(isKV)
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		g.add(g.mapKV(), []int{in}, Coll{Type: KVType, Win: c.Win, TsKnown: c.TsKnown, Multi: c.Multi, Bounded: true, TimerOut: c.TimerOut})
	case 2:
		in := g.pick(isKV)
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		g.add(TwinMap{A: g.mapKV(), B: g.mapKV()}, []int{in}, Coll{Type: KVType, Win: c.Win, TsKnown: c.TsKnown, Multi: c.Multi, Bounded: true, TimerOut: c.TimerOut})
	case 3:
		in := g.pick(func(Coll) bool { return true })
		c := g.spec.Colls[in]
		g.add(Filter{M: 2 + r.Int64N(4), Rem: r.Int64N(2), Salt: r.Int64N(3)}, []int{in}, c)
	case 4:
		in := g.pick(func(c Coll) bool { return len(g.elems[c.ID]) < 50_000 })
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		c.Bounded = true
		g.add(Fanout{F: 1 + r.Int64N(3), Step: 1 + r.Int64N(1000)}, []int{in}, c)
	case 5:
		in := g.pick(func(Coll) bool { return true })
		c := g.spec.Colls[in]
		g.add(Route{}, []int{in}, c, c)
	case 6:
		if r.IntN(2) == 0 {
			in := g.pick(isKV)
			if in < 0 {
				return false
			}
			c := g.spec.Colls[in]
			c.Type = NumType
			g.add(DropKey{}, []int{in}, c)
		} else {
			in := g.pick(isNum)
			if in < 0 {
				return false
			}
			c := g.spec.Colls[in]
			c.Type = KVType
			g.add(KeyBy{Mul: 1 + r.Int64N(1000), Add: r.Int64N(100), Keys: g.keys(int64(len(g.elems[in])))}, []int{in}, c)
		}
	case 7:
		return g.window()
	case 8:
		in := g.pick(func(c Coll) bool {
			ok, _, _ := g.timesIn(c.ID, MinTS, TimeBound)
			return c.Win.Kind == GlobalWindows && c.TsKnown && ok
		})
		if in < 0 {
			return false
		}
		g.add(Restamp{Span: 1 + r.Int64N(1000), Step: 1 + r.Int64N(100)}, []int{in}, g.spec.Colls[in])
	case 9:
		in := g.pick(func(Coll) bool { return true })
		g.add(Reshuffle{}, []int{in}, g.spec.Colls[in])
	case 10:
		a := g.pick(func(Coll) bool { return true })
		c := g.spec.Colls[a]
		ins := []int{a, a} // one PCollection flattened twice
		if r.IntN(3) > 0 {
			ins[1] = g.pick(same(c))
		}
		if r.IntN(3) == 0 {
			ins = append(ins, g.pick(same(c)))
		}
		out := c
		for _, i := range ins {
			o := g.spec.Colls[i]
			out.TsKnown = out.TsKnown && o.TsKnown
			out.Multi = out.Multi || o.Multi
			out.Bounded = out.Bounded && o.Bounded
			out.TimerOut = out.TimerOut || o.TimerOut
		}
		g.add(Flatten{}, ins, out)
	case 11, 12:
		in := g.pick(func(c Coll) bool { return isKV(c) && groupable(c) })
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		g.add(GroupByKey{Mode: r.IntN(numGroupModes)}, []int{in}, Coll{Type: KVType, Win: c.Win, TsKnown: true, Bounded: true})
	case 13:
		a := g.pick(func(c Coll) bool { return isKV(c) && groupable(c) })
		if a < 0 {
			return false
		}
		c := g.spec.Colls[a]
		sameG := func(o Coll) bool { return same(c)(o) && groupable(o) }
		ins := []int{a, g.pick(sameG)}
		if r.IntN(3) == 0 {
			ins = append(ins, g.pick(sameG))
		}
		g.add(CoGroupByKey{}, ins, Coll{Type: KVType, Win: c.Win, TsKnown: true, Bounded: true})
	case 14, 15:
		return g.combine()
	case 16:
		return g.sideInput()
	default:
		return g.stateful()
	}
	return true
}

func (g *gen) mapKV() MapKV {
	m := MapKV{ValMul: 1 + g.r.Int64N(1000), ValAdd: g.r.Int64N(1000)}
	if g.r.IntN(2) == 0 {
		m.KeyMul, m.KeyAdd, m.KeyMod = 1+g.r.Int64N(100), g.r.Int64N(100), 1+g.r.Int64N(1000)
	}
	return m
}

func (g *gen) window() bool {
	var lo, hi int64
	in := g.pick(func(c Coll) bool {
		ok, _, _ := g.timesIn(c.ID, 0, TimeBound)
		return c.TsKnown && !c.Multi && ok && len(g.elems[c.ID]) > 0
	})
	if in < 0 {
		return false
	}
	_, lo, hi = g.timesIn(in, 0, TimeBound)
	span := max(1, hi-lo)
	unit := max(1, span/(1+g.r.Int64N(20)))
	var fn WinFn
	switch g.r.IntN(7) {
	case 0:
		fn = global
	case 1, 2, 3:
		fn = WinFn{Kind: FixedWindows, Size: unit}
	case 4, 5:
		period := max(1, unit/(1+g.r.Int64N(4)))
		fn = WinFn{Kind: SlidingWindows, Size: period * (1 + g.r.Int64N(4)), Period: period}
	default:
		fn = WinFn{Kind: SessionWindows, Size: max(1, unit/(1+g.r.Int64N(10)))}
	}
	c := g.spec.Colls[in]
	c.Win, c.Multi = fn, fn.Kind == SlidingWindows && fn.Size > fn.Period
	g.add(WindowInto{Fn: fn}, []int{in}, c)
	return true
}

func (g *gen) combine() bool {
	fn := g.r.IntN(numCombines)
	switch fn {
	case CombineCount, CombineGlobalSum:
		in := g.pick(func(c Coll) bool { return isNum(c) && groupable(c) })
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		out := Coll{Type: KVType, Win: c.Win, TsKnown: true, Bounded: true}
		if fn == CombineGlobalSum {
			out.Type, out.Bounded = NumType, false
		}
		g.add(Combine{Fn: fn}, []int{in}, out)
	default:
		in := g.pick(func(c Coll) bool { return isKV(c) && groupable(c) && (fn != CombineMeanPerKey || c.Bounded) })
		if in < 0 {
			return false
		}
		c := g.spec.Colls[in]
		bounded := fn != CombineSumPerKey && (fn != CombineMaxPerKey || c.Bounded)
		g.add(Combine{Fn: fn}, []int{in}, Coll{Type: KVType, Win: c.Win, TsKnown: true, Bounded: bounded})
	}
	return true
}

func (g *gen) sideInput() bool {
	kind := g.r.IntN(numSideKinds)
	main := g.pick(func(c Coll) bool { return isKV(c) && len(g.elems[c.ID]) <= 20_000 })
	if main < 0 {
		return false
	}
	mc := g.spec.Colls[main]
	side := g.pick(func(c Coll) bool {
		if len(g.elems[c.ID]) > 300 || (kind == SideMultimap) != isKV(c) || !groupable(c) {
			return false
		}
		switch c.Win.Kind {
		case GlobalWindows:
		case FixedWindows:
			if kind == SideSingleton || (mc.Win.Kind != FixedWindows && mc.Win.Kind != SlidingWindows) {
				return false
			}
		default:
			return false
		}
		return kind != SideSingleton || len(g.elems[c.ID]) > 0
	})
	if side < 0 {
		return false
	}
	mc.Bounded, mc.TimerOut = true, true
	g.add(SideInput{Side: kind}, []int{main, side}, mc)
	return true
}

func (g *gen) stateful() bool {
	r := g.r
	st := Stateful{State: r.IntN(numStateKinds), KeyMod: 1 + r.Int64N(20), Delta: 1 + r.Int64N(100), Chain: r.Int64N(3)}
	needTs := st.State == StateOrderedList
	switch r.IntN(4) {
	case 0:
		st.Tags = true
		needTs = true
		if r.IntN(2) == 0 {
			st.ClearMod = 2 + r.Int64N(3)
		}
	case 1:
		st.Proc = true
	default:
		st.End = EndOnce + r.IntN(2)
	}
	if st.State == StateValue && (r.IntN(2) == 0 || (!st.Tags && !st.Proc && st.End == EndNone)) {
		st.Running = true
	}
	if st.Tags && r.IntN(3) == 0 {
		st.End = EndOnce + r.IntN(2)
	}
	multiFamily := !knownBugTimerFamiliesFnAPI || g.set.InProcess
	if st.Tags && st.End != EndNone {
		st.SplitFamilies = multiFamily && r.IntN(2) == 0
	}
	if st.Proc && multiFamily && r.IntN(3) == 0 {
		st.Tags, needTs = true, true
	}
	in := g.pick(func(c Coll) bool {
		if !isKV(c) || !groupable(c) || c.Win.Merging() || (needTs && !c.TsKnown) || (st.Proc && c.Win.Kind != GlobalWindows) {
			return false
		}
		if knownBugEndOfGlobalTimers && st.End != EndNone && c.Win.Kind == GlobalWindows {
			return false
		}
		return true
	})
	if in < 0 {
		return false
	}
	c := g.spec.Colls[in]
	if st.State == StateOrderedList {
		_, lo, hi := g.timesIn(in, MinTS, MaxTS+1)
		st.Lo, st.Hi = lo+(hi-lo)/4, lo+3*(hi-lo)/4+1
	}
	g.add(st, []int{in}, Coll{Type: KVType, Win: c.Win, TsKnown: !st.Proc, Bounded: true, TimerOut: st.End != EndNone || st.Tags})
	return true
}

// sinks records every collection nothing consumes, and some others.
func (g *gen) sinks() {
	for _, c := range g.spec.Colls {
		if !g.used[c.ID] || g.r.IntN(5) == 0 {
			g.spec.Sinks = append(g.spec.Sinks, Sink{Name: fmt.Sprintf("s%d", c.ID), Coll: c.ID})
		}
	}
}
