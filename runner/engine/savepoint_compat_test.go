package engine

import (
	"cmp"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/savepoint"
)

// The versions of a struct kept in state.
type spRowV1 struct{ N int64 }
type spRowV2 struct {
	N     int64
	Label string
}

// spFn is a stateful DoFn whose versions give its state IDs to other
// fields: the same DoFn and unique name, another coder for state "count"
// or "row".
type spFn struct {
	A, B, C, D state.Value[int64]
	S          state.Value[string]
	R1         state.Value[spRowV1]
	R2         state.Value[spRowV2]
}

func (fn *spFn) ProcessElement(sp state.Provider, k beam.X, v int64) error { return nil }

// spOtherFn has spFn's states, but is another DoFn.
type spOtherFn spFn

func (fn *spOtherFn) ProcessElement(sp state.Provider, k beam.X, v int64) error { return nil }

func spToKV(s string) (string, int64)                    { return s, 1 }
func spToIntKV(s string) (int64, int64)                  { return int64(len(s)), 1 }
func spIdentity(s string) string                         { return s }
func spSideFn(s string, side func(*beam.X, *int64) bool) {}

func init() {
	register.DoFn3x1[state.Provider, beam.X, int64, error](&spFn{})
	register.DoFn3x1[state.Provider, beam.X, int64, error](&spOtherFn{})
	register.Function1x2(spToKV)
	register.Function1x2(spToIntKV)
	register.Function1x1(spIdentity)
	register.Function2x0(spSideFn)
	register.Iter2[beam.X, int64]()
	beam.RegisterType(reflect.TypeOf(spRowV1{}))
	beam.RegisterType(reflect.TypeOf(spRowV2{}))
}

// spVersion is one version of the test pipeline.
type spVersion struct {
	upstream  bool   // a transform added before the keys are made
	intKeys   bool   // keys are int64, not strings
	windowed  bool   // fixed one-minute windows before the stateful DoFn
	noState   bool   // the stateful DoFn removed
	other     bool   // spOtherFn instead of spFn
	countText bool   // state "count" is a string, "s" an int64
	rowV2     bool   // state "row" is spRowV2, "r2" spRowV1
	scope     string // the stateful DoFn's scope ("Count")
}

func (v spVersion) build(s beam.Scope) {
	in := beam.Create(s.Scope("In"), "a", "bb", "a")
	if v.upstream {
		in = beam.ParDo(s.Scope("Upstream"), spIdentity, in)
	}
	kvs := beam.ParDo(s.Scope("Keys"), spToKV, in)
	if v.intKeys {
		kvs = beam.ParDo(s.Scope("Keys"), spToIntKV, in)
	}
	// A GroupByKey and a side input of the keyed elements.
	beam.GroupByKey(s.Scope("Group"), kvs)
	beam.ParDo0(s.Scope("Side"), spSideFn, in, beam.SideInput{Input: kvs})
	if v.windowed {
		kvs = beam.WindowInto(s, window.NewFixedWindows(time.Minute), kvs)
	}
	if v.noState {
		return
	}
	fn := spFn{
		A: state.MakeValueState[int64]("count"), B: state.MakeValueState[int64]("b"), C: state.MakeValueState[int64]("c"),
		D: state.MakeValueState[int64]("d"), S: state.MakeValueState[string]("s"),
		R1: state.MakeValueState[spRowV1]("row"), R2: state.MakeValueState[spRowV2]("r2"),
	}
	if v.countText {
		fn.A, fn.S = state.MakeValueState[int64]("s"), state.MakeValueState[string]("count")
	}
	if v.rowV2 {
		fn.R1, fn.R2 = state.MakeValueState[spRowV1]("r2"), state.MakeValueState[spRowV2]("row")
	}
	scope := s.Scope(cmp.Or(v.scope, "Count"))
	if v.other {
		o := spOtherFn(fn)
		beam.ParDo0(scope, &o, kvs)
		return
	}
	beam.ParDo0(scope, &fn, kvs)
}

// compatSide is one side of a restore: a pipeline's components and what
// a savepoint of it declares (every owner holding state).
func compatSide(t *testing.T, v spVersion) (*pipepb.Components, *savepoint.Metadata) {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	v.build(s)
	edges, _, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	env, err := graphx.CreateEnvironment(context.Background(), graphx.URNEnvExternal, func(context.Context) string { return "localhost:1" })
	if err != nil {
		t.Fatal(err)
	}
	pb, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := plan.Build(pb, plan.Options{LiftCombiners: true})
	if err != nil {
		t.Fatal(err)
	}
	m := New(pl, Options{Parallelism: 1}).savepointDecls()
	for i := range m.Transforms {
		m.Transforms[i].Files = []savepoint.File{{Path: "t"}}
	}
	for i := range m.Sources {
		m.Sources[i].Files = []savepoint.File{{Path: "r"}}
	}
	return pl.Components, m
}

const countName = "Count/engine.spFn"

// TestRestorePlan plans restores of v1 of a stateful pipeline into
// changed versions: what restores, what is migrated, and each refusal
// names the transform, the state, what differs and the fix.
func TestRestorePlan(t *testing.T) {
	v1Comps, v1 := compatSide(t, spVersion{})
	for _, tc := range []struct {
		name    string
		v2      spVersion
		rename  map[string]string
		allow   bool
		steps   []string // "<describe>: <action>" prefixes that must be in the plan
		refused []string // what the error must say (nil: no error)
	}{
		{name: "same pipeline", v2: spVersion{}, steps: []string{`transform "` + countName + `": restored`, `state "count" of "` + countName + `": restored`,
			`GroupByKey "Group/CoGBK": restored`, `side input "i1" of "Side/engine.spSideFn": restored`}},
		{name: "a transform added upstream", v2: spVersion{upstream: true},
			steps: []string{`transform "` + countName + `": restored`, `state "row" of "` + countName + `": restored`}},
		{name: "renamed by a mapping", v2: spVersion{scope: "Counter"}, rename: map[string]string{"Count": "Counter"},
			steps: []string{`transform "` + countName + `" (now "Counter/engine.spFn"): renamed`}},
		{name: "stateful transform removed", v2: spVersion{noState: true},
			steps:   []string{`transform "` + countName + `": refused: not in the pipeline`},
			refused: []string{"has no place for", countName, "--allow_non_restored_state", "--transform_name_mapping"}},
		{name: "stateful transform removed, allowed", v2: spVersion{noState: true}, allow: true,
			steps: []string{`transform "` + countName + `": dropped: not in the pipeline (--allow_non_restored_state)`}},
		{name: "dropped by the mapping", v2: spVersion{noState: true}, rename: map[string]string{"Count": ""},
			steps: []string{`transform "` + countName + `": dropped: --transform_name_mapping maps it to ""`}},
		{name: "state coder changed", v2: spVersion{countText: true},
			refused: []string{`state "count" of "` + countName + `"`, "value coder changed from beam:coder:varint:v1 to beam:coder:string_utf8:v1", "keep the old type"}},
		{name: "struct gained a field", v2: spVersion{rowV2: true},
			steps: []string{`state "row" of "` + countName + `": migrated: row schema {N int64} to {N int64, Label string}: fields added [Label], removed []`,
				`state "r2" of "` + countName + `": migrated: row schema {N int64, Label string} to {N int64}: fields added [], removed [Label]`}},
		{name: "DoFn swapped under the name", v2: spVersion{other: true}, rename: map[string]string{countName: "Count/engine.spOtherFn"},
			refused: []string{`transform "` + countName + `" (now "Count/engine.spOtherFn")`, "its DoFn changed from beam:go:transform:dofn:v1 type ", "engine.spFn to beam:go:transform:dofn:v1 type ", "engine.spOtherFn", "beam.Scope"}},
		{name: "key coder changed", v2: spVersion{intKeys: true},
			refused: []string{`transform "` + countName + `": its key coder changed from beam:coder:string_utf8:v1 to beam:coder:varint:v1; keep the key type`,
				`GroupByKey "Group/CoGBK": its key coder changed from beam:coder:string_utf8:v1 to beam:coder:varint:v1`,
				`side input "i1" of "Side/engine.spSideFn": its value coder changed from beam:coder:kv:v1(beam:coder:string_utf8:v1, beam:coder:varint:v1) to beam:coder:kv:v1(beam:coder:varint:v1, beam:coder:varint:v1)`}},
		{name: "windowing changed", v2: spVersion{windowed: true},
			refused: []string{`transform "` + countName + `"`, "the window fn of its input changed from beam:window_fn:global_windows:v1 to beam:window_fn:fixed_windows:v1(size 1m0s, offset 0s)", "keep the windowing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v2Comps, v2 := compatSide(t, tc.v2)
			src := &SavepointSource{Rename: tc.rename}
			p := planRestore(compatInput{where: "sp", old: v1, now: v2, oldComps: v1Comps, newComps: v2Comps, rename: src.renamed, allow: tc.allow})
			text := p.String()
			t.Log(text)
			for _, s := range tc.steps {
				if !strings.Contains(text, "  "+s) {
					t.Errorf("the plan has no step %q:\n%s", s, text)
				}
			}
			err := p.Err()
			if tc.refused == nil {
				if err != nil {
					t.Fatalf("refused: %v\n%s", err, text)
				}
				if !strings.HasSuffix(text, "the job would start from the savepoint\n") {
					t.Errorf("the plan does not say the job starts:\n%s", text)
				}
				return
			}
			if err == nil {
				t.Fatalf("not refused:\n%s", text)
			}
			for _, s := range tc.refused {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("the refusal does not say %q: %v", s, err)
				}
			}
			if !strings.HasSuffix(text, "the job would be refused\n") {
				t.Errorf("the plan does not say the job is refused:\n%s", text)
			}
		})
	}
}

// TestRestorePlanWarnsOfUnstableNames: names that an edit moves are
// named with the fix.
func TestRestorePlanWarnsOfUnstableNames(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"Count/engine.spFn'1", "a 'N suffix"},
		{"main.func2", "a closure number"},
		{"Top/main.func3.1/x", "a closure number"},
		{"Sum/stats.sumFn[int64]", "a generic function's name"},
		{"Count/engine.spFn", ""},
		{"Count'1x", ""},
	} {
		got := unstableName(tc.name)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("unstableName(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	comps, m := compatSide(t, spVersion{})
	m.Transforms[0].UniqueName = "Count/engine.spFn'1"
	p := planRestore(compatInput{where: "sp", old: m, now: m, oldComps: comps, newComps: comps, rename: (&SavepointSource{}).renamed})
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `transform "Count/engine.spFn'1"`) || !strings.Contains(p.Warnings[0], "beam.Scope") {
		t.Fatalf("warnings %q, want one about the 'N suffix with the fix", p.Warnings)
	}
}

// TestRestorePlanTimers: a timer family the transform no longer has is
// refused, or dropped (and its timers skipped on import) when allowed; a
// changed time domain is refused.
func TestRestorePlanTimers(t *testing.T) {
	comps, now := compatSide(t, spVersion{})
	old := *now
	old.Transforms = slices.Clone(now.Transforms)
	tr := &old.Transforms[0]
	tr.Timers = []savepoint.TimerFamily{{ID: "flush", Domain: savepoint.EventTime, KeyCoder: tr.States[0].KeyCoder, WindowCoder: tr.States[0].WindowCoder}}
	in := compatInput{where: "sp", old: &old, now: now, oldComps: comps, newComps: comps, rename: (&SavepointSource{}).renamed}
	if err := planRestore(in).Err(); err == nil || !strings.Contains(err.Error(), `timer "flush" of "`+countName+`"`) {
		t.Errorf("a timer family with no place: err = %v, want a refusal naming it", err)
	}
	in.allow = true
	p := planRestore(in)
	if err := p.Err(); err != nil || !p.droppedTimers[[2]string{countName, "flush"}] {
		t.Errorf("allowed: err = %v, dropped timers %v; want timer flush of %s dropped", err, p.droppedTimers, countName)
	}
	in.allow = false
	changed := *now
	changed.Transforms = slices.Clone(now.Transforms)
	changed.Transforms[0].Timers = []savepoint.TimerFamily{{ID: "flush", Domain: savepoint.ProcessingTime}}
	in.now = &changed
	if err := planRestore(in).Err(); err == nil || !strings.Contains(err.Error(), "its time domain changed from event to processing") {
		t.Errorf("a timer family in another time domain: err = %v, want a refusal naming both domains", err)
	}
}
