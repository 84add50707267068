package plan_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/state"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/local"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/teststream"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// The DoFns below are only marshalled, never run.

func upper(s string) string                               { return strings.ToUpper(s) }
func pair(s string) (string, int)                         { return s, 1 }
func keyOf(k string, v int) string                        { return k }
func sum(a, b int) int                                    { return a + b }
func format(k string, vs func(*int) bool) string          { return k }
func withSide(s string, side []string, emit func(string)) { emit(s) }
func withTwoSides(s string, side []string, lookup func(string) func(*int) bool, emit func(string)) {
	emit(s)
}

// statefulFn keeps per-key state and sets an event-time timer.
type statefulFn struct {
	Count state.Value[int]
	Fire  timers.EventTime
}

func (f *statefulFn) ProcessElement(sp state.Provider, tp timers.Provider, k string, v int, emit func(string, int)) {
	emit(k, v)
}

func (f *statefulFn) OnTimer(ctx context.Context, ts beam.EventTime, sp state.Provider, tp timers.Provider, key string, timer timers.Context, emit func(string, int)) {
}

// orderedListFn uses ordered-list state.
type orderedListFn struct {
	L state.OrderedList[int]
}

func (f *orderedListFn) ProcessElement(sp state.Provider, k string, v int, emit func(string, int)) {
	emit(k, v)
}

func init() {
	beam.RegisterType(reflect.TypeOf((*statefulFn)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*orderedListFn)(nil)).Elem())
}

// loopbackEnv is an external environment like the one --environment_type=LOOPBACK produces.
func loopbackEnv(t *testing.T) *pipepb.Environment {
	t.Helper()
	env, err := graphx.CreateEnvironment(context.Background(), graphx.URNEnvExternal, func(context.Context) string { return "localhost:1" })
	if err != nil {
		t.Fatalf("creating environment: %v", err)
	}
	return env
}

// marshal builds a pipeline proto with the real Go SDK, as
// runners/universal.Execute does.
func marshal(t *testing.T, env *pipepb.Environment, build func(s beam.Scope)) *pipepb.Pipeline {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	build(s)
	edges, _, err := p.Build()
	if err != nil {
		t.Fatalf("building pipeline: %v", err)
	}
	pipe, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
	if err != nil {
		t.Fatalf("marshalling pipeline: %v", err)
	}
	return pipe
}

// inputFile is a small local text file for textio.Read.
func inputFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(f, []byte("a\nb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// shortURN turns beam:transform:group_by_key:v1 into group_by_key.
func shortURN(urn string) string {
	urn = strings.TrimPrefix(urn, "beam:transform:")
	return strings.TrimSuffix(urn, ":v1")
}

// render describes every stage in one line, independent of generated IDs:
//
//	kind: transform | transform{urn} flags <- partition(producer) ... side partition(producer) access
//
// Transforms are unique names, with the short URN of every transform that
// is not a plain ParDo. A producer is named by its stage's Name. Inputs are
// sorted, so an input delivered twice appears twice. Lines are sorted,
// because two independent branches may be ordered either way.
func render(t *testing.T, pl *plan.Plan) []string {
	t.Helper()
	type in struct {
		port int
		desc string
	}
	ins := map[*plan.Stage][]in{}
	for _, id := range slices.Sorted(maps.Keys(pl.PColls)) {
		pc := pl.PColls[id]
		prod := "nothing"
		if pc.Producer != nil {
			prod = pc.Producer.Name
			if !slices.Contains(pc.Producer.Outputs, id) {
				t.Errorf("pcollection %s: producer %s does not list it in Outputs %v", id, pc.Producer.ID, pc.Producer.Outputs)
			}
		}
		for _, c := range pc.Consumers {
			d := fmt.Sprintf("%s(%s)", c.Partition, prod)
			if c.Port > 0 {
				si := c.Stage.SideInputs[c.Port-1]
				if si.PColl != id {
					t.Errorf("stage %s port %d is side input %s but is fed %s", c.Stage.ID, c.Port, si.PColl, id)
				}
				access := "iterable"
				if si.Multimap {
					access = "multimap"
				}
				d = "side " + d + " " + access
			}
			ins[c.Stage] = append(ins[c.Stage], in{c.Port, d})
		}
	}
	var lines []string
	for _, s := range pl.Stages {
		var names []string
		for _, id := range s.Transforms {
			tr := pl.Components.GetTransforms()[id]
			n := tr.GetUniqueName()
			if u := tr.GetSpec().GetUrn(); u != plan.URNParDo {
				n += "{" + shortURN(u) + "}"
			}
			names = append(names, n)
		}
		line := s.Kind.String() + ": " + strings.Join(names, " | ")
		if s.Stateful {
			line += " stateful"
		}
		for _, tf := range s.Timers {
			line += " timer=" + tf.Family
		}
		if s.Splittable != "" {
			line += " splittable"
		}
		sort.Slice(ins[s], func(i, j int) bool {
			if ins[s][i].port != ins[s][j].port {
				return ins[s][i].port < ins[s][j].port
			}
			return ins[s][i].desc < ins[s][j].desc
		})
		for i, x := range ins[s] {
			if i == 0 {
				line += " <-"
			}
			line += " " + x.desc
		}
		lines = append(lines, line)
	}
	sort.Strings(lines)
	return lines
}

func TestBuildStages(t *testing.T) {
	tests := []struct {
		name   string
		build  func(t *testing.T, s beam.Scope)
		noLift bool     // plan without combiner lifting
		want   []string // render's lines, in any order
		check  func(t *testing.T, pl *plan.Plan)
	}{
		{
			name: "ParDo chain fuses, GroupByKey is its own stage",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.ParDo(s, pair, beam.ParDo(s, upper, beam.Create(s, "a", "b")))
				beam.ParDo(s, format, beam.GroupByKey(s, kv))
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.upper | plan_test.pair <- forward(Impulse)",
				"gbk: CoGBK{group_by_key} <- hash(beam.createFn)",
				"sdk: plan_test.format <- forward(CoGBK)",
			},
		},
		{
			name: "ParDo with a side input starts a stage; its side input is broadcast",
			build: func(t *testing.T, s beam.Scope) {
				main := beam.Create(s, "a", "b")
				side := beam.Create(s, "x")
				out := beam.ParDo(s, withSide, main, beam.SideInput{Input: side})
				beam.ParDo(s, upper, out) // fuses behind the side-input ParDo
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"impulse: Impulse'1{impulse}",
				"sdk: beam.createFn <- forward(Impulse)",
				"sdk: beam.createFn'1 <- forward(Impulse'1)",
				"sdk: plan_test.withSide | plan_test.upper <- forward(beam.createFn) side broadcast(beam.createFn'1) iterable",
			},
		},
		{
			name: "iterable and multimap side inputs are both broadcast",
			build: func(t *testing.T, s beam.Scope) {
				main := beam.Create(s, "a")
				side := beam.Create(s, "x")
				kvs := beam.ParDo(s, pair, beam.Create(s, "k"))
				beam.ParDo(s, withTwoSides, main, beam.SideInput{Input: side}, beam.SideInput{Input: kvs})
			},
			want: []string{
				"impulse: Impulse'2{impulse}",
				"impulse: Impulse'1{impulse}",
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn <- forward(Impulse)",
				"sdk: beam.createFn'1 <- forward(Impulse'1)",
				"sdk: beam.createFn'2 | plan_test.pair <- forward(Impulse'2)",
				"sdk: plan_test.withTwoSides <- forward(beam.createFn) side broadcast(beam.createFn'1) iterable side broadcast(beam.createFn'2) multimap",
			},
		},
		{
			name: "stateful DoFn starts a stage fed by key; stateless ParDos fuse behind it",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.ParDo(s, pair, beam.Create(s, "a", "b"))
				out := beam.ParDo(s, &statefulFn{Count: state.MakeValueState[int]("count"), Fire: timers.InEventTime("fire")}, kv)
				beam.ParDo(s, keyOf, out)
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair <- forward(Impulse)",
				"sdk: plan_test.statefulFn | plan_test.keyOf stateful timer=fire <- hash(beam.createFn)",
			},
		},
		{
			name: "ordered list state is stateful",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.ParDo(s, pair, beam.Create(s, "a", "b"))
				beam.ParDo(s, &orderedListFn{L: state.MakeOrderedListState[int]("list")}, kv)
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair <- forward(Impulse)",
				"sdk: plan_test.orderedListFn stateful <- hash(beam.createFn)",
			},
		},
		{
			name: "splittable DoFn (textio.Read) expands; the process step is its own round-robin stage",
			build: func(t *testing.T, s beam.Scope) {
				textio.Read(s, inputFile(t))
			},
			want: []string{
				"impulse: textio.Read/Impulse{impulse}",
				"sdk: textio.Read/beam.createFn | textio.Read/fileio.MatchAll/fileio.matchFn | textio.Read/fileio.ReadMatches/fileio.readFn" +
					" | textio.Read/textio.readFn/PairWithRestriction{sdf_pair_with_restriction}" +
					" | textio.Read/textio.readFn/SplitAndSize{sdf_split_and_size_restrictions} <- forward(textio.Read/Impulse)",
				"sdk: textio.Read/textio.readFn{sdf_process_sized_element_and_restrictions} splittable <- round-robin(textio.Read/beam.createFn)",
			},
			check: func(t *testing.T, pl *plan.Plan) {
				// The process step reads KV<KV<element, restriction>, size>.
				for _, s := range pl.Stages {
					if s.Splittable == "" {
						continue
					}
					pdo := &pipepb.ParDoPayload{}
					if err := proto.Unmarshal(pl.Components.GetTransforms()[s.Splittable].GetSpec().GetPayload(), pdo); err != nil {
						t.Fatal(err)
					}
					in := coder(pl, pl.Components.GetPcollections()[s.Input].GetCoderId())
					if in.GetSpec().GetUrn() != "beam:coder:kv:v1" || coder(pl, in.GetComponentCoderIds()[1]).GetSpec().GetUrn() != "beam:coder:double:v1" {
						t.Errorf("process step input coder %v, want KV<_, double>", in)
					}
					er := coder(pl, in.GetComponentCoderIds()[0])
					if er.GetSpec().GetUrn() != "beam:coder:kv:v1" || er.GetComponentCoderIds()[1] != pdo.GetRestrictionCoderId() {
						t.Errorf("process step input element coder %v, want KV<_, %s>", er, pdo.GetRestrictionCoderId())
					}
				}
			},
		},
		{
			name: "CombinePerKey is lifted into precombine / GBK / merge / extract",
			build: func(t *testing.T, s beam.Scope) {
				beam.CombinePerKey(s, sum, beam.ParDo(s, pair, beam.Create(s, "a", "b")))
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair | CombinePerKey/Precombine{combine_per_key_precombine} <- forward(Impulse)",
				"gbk: CombinePerKey/Group{group_by_key} <- hash(beam.createFn)",
				"sdk: CombinePerKey/Merge{combine_per_key_merge_accumulators} | CombinePerKey/Extract{combine_per_key_extract_outputs} <- forward(CombinePerKey/Group)",
			},
			check: func(t *testing.T, pl *plan.Plan) {
				// The runner's GBK groups KV<key, accumulator>.
				for _, s := range pl.Stages {
					if s.Kind != plan.KindGBK {
						continue
					}
					cp := &pipepb.CombinePayload{}
					for _, tr := range pl.Components.GetTransforms() {
						if tr.GetSpec().GetUrn() == plan.URNCombinePre {
							if err := proto.Unmarshal(tr.GetSpec().GetPayload(), cp); err != nil {
								t.Fatal(err)
							}
						}
					}
					in := coder(pl, pl.Components.GetPcollections()[s.Input].GetCoderId())
					if in.GetSpec().GetUrn() != "beam:coder:kv:v1" || in.GetComponentCoderIds()[1] != cp.GetAccumulatorCoderId() || cp.GetAccumulatorCoderId() == "" {
						t.Errorf("GBK input coder %v, want KV<_, %s>", in, cp.GetAccumulatorCoderId())
					}
				}
			},
		},
		{
			name: "CombinePerKey over fixed windows is lifted",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.WindowInto(s, window.NewFixedWindows(time.Minute), beam.ParDo(s, pair, beam.Create(s, "a", "b")))
				beam.CombinePerKey(s, sum, kv)
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair | WindowInto{window_into} | CombinePerKey/Precombine{combine_per_key_precombine} <- forward(Impulse)",
				"gbk: CombinePerKey/Group{group_by_key} <- hash(beam.createFn)",
				"sdk: CombinePerKey/Merge{combine_per_key_merge_accumulators} | CombinePerKey/Extract{combine_per_key_extract_outputs} <- forward(CombinePerKey/Group)",
			},
		},
		{
			name: "CombinePerKey over sessions is not lifted",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.WindowInto(s, window.NewSessions(time.Minute), beam.ParDo(s, pair, beam.Create(s, "a", "b")))
				beam.CombinePerKey(s, sum, kv)
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair | WindowInto{window_into} <- forward(Impulse)",
				"gbk: CombinePerKey/CoGBK{group_by_key} <- hash(beam.createFn)",
				"sdk: CombinePerKey/plan_test.sum <- forward(CombinePerKey/CoGBK)",
			},
		},
		{
			name: "CombinePerKey is not lifted when lifting is off",
			build: func(t *testing.T, s beam.Scope) {
				beam.CombinePerKey(s, sum, beam.ParDo(s, pair, beam.Create(s, "a", "b")))
			},
			noLift: true,
			want: []string{
				"impulse: Impulse{impulse}",
				"sdk: beam.createFn | plan_test.pair <- forward(Impulse)",
				"gbk: CombinePerKey/CoGBK{group_by_key} <- hash(beam.createFn)",
				"sdk: CombinePerKey/plan_test.sum <- forward(CombinePerKey/CoGBK)",
			},
		},
		{
			name: "Flatten with a duplicated input feeds its consumer that input twice",
			build: func(t *testing.T, s beam.Scope) {
				a := beam.Create(s, "a")
				b := beam.Create(s, "b")
				beam.ParDo(s, upper, beam.Flatten(s, a, b, a))
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"impulse: Impulse'1{impulse}",
				"sdk: beam.createFn <- forward(Impulse)",
				"sdk: beam.createFn'1 <- forward(Impulse'1)",
				"sdk: plan_test.upper <- forward(beam.createFn'1) forward(beam.createFn) forward(beam.createFn)",
			},
		},
		{
			name: "nested Flattens into a GroupByKey: every delivery is hashed",
			build: func(t *testing.T, s beam.Scope) {
				a := beam.ParDo(s, pair, beam.Create(s, "a"))
				b := beam.ParDo(s, pair, beam.Create(s, "b"))
				beam.GroupByKey(s, beam.Flatten(s, beam.Flatten(s, a, b), a))
			},
			want: []string{
				"impulse: Impulse{impulse}",
				"impulse: Impulse'1{impulse}",
				"sdk: beam.createFn | plan_test.pair <- forward(Impulse)",
				"sdk: beam.createFn'1 | plan_test.pair'1 <- forward(Impulse'1)",
				"gbk: CoGBK{group_by_key} <- hash(beam.createFn'1) hash(beam.createFn) hash(beam.createFn)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pipe := marshal(t, loopbackEnv(t), func(s beam.Scope) { tc.build(t, s) })
			before := proto.Clone(pipe)
			if err := plan.Validate(pipe); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			pl, err := plan.Build(pipe, plan.Options{LiftCombiners: !tc.noLift})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if !proto.Equal(before, pipe) {
				t.Errorf("Build modified the pipeline it was given")
			}
			got := render(t, pl)
			want := slices.Clone(tc.want)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("stages:\n  got:\n    %s\n  want:\n    %s", strings.Join(got, "\n    "), strings.Join(want, "\n    "))
			}
			checkPlan(t, pl)
			if tc.check != nil {
				tc.check(t, pl)
			}
		})
	}
}

// checkPlan checks invariants every plan must keep: stages in topological
// order, wire coders on every boundary PCollection, and an SDK descriptor
// that reads the stage input and writes each output.
func checkPlan(t *testing.T, pl *plan.Plan) {
	t.Helper()
	pos := map[*plan.Stage]int{}
	for i, s := range pl.Stages {
		pos[s] = i
	}
	for id, pc := range pl.PColls {
		if pc.WireCoder == "" || pl.Components.GetCoders()[pc.WireCoder] == nil {
			t.Errorf("pcollection %s: wire coder %q is not defined", id, pc.WireCoder)
		}
		for _, c := range pc.Consumers {
			if pc.Producer != nil && pos[pc.Producer] >= pos[c.Stage] {
				t.Errorf("pcollection %s: producer %s does not come before consumer %s", id, pc.Producer.ID, c.Stage.ID)
			}
		}
	}
	api := &pipepb.ApiServiceDescriptor{Url: "localhost:2"}
	for _, s := range pl.Stages {
		if s.Kind != plan.KindSDK {
			continue
		}
		d, err := pl.Descriptor(s, api)
		if err != nil {
			t.Errorf("Descriptor(%s): %v", s.ID, err)
			continue
		}
		src := d.GetTransforms()[s.SourceID]
		if src.GetSpec().GetUrn() != plan.URNDataSource || src.GetOutputs()["o0"] != s.Input {
			t.Errorf("stage %s: data source %v does not read the stage input %s", s.ID, src, s.Input)
		}
		for _, pc := range s.Outputs {
			sink := d.GetTransforms()[s.SinkIDs[pc]]
			if sink.GetSpec().GetUrn() != plan.URNDataSink || sink.GetInputs()["i0"] != pc {
				t.Errorf("stage %s: no data sink for output %s", s.ID, pc)
			}
		}
		wantState := len(s.SideInputs) > 0 || s.Stateful
		if got := d.GetStateApiServiceDescriptor() != nil; got != wantState {
			t.Errorf("stage %s: descriptor has state API %v, want %v", s.ID, got, wantState)
		}
		if got := d.GetTimerApiServiceDescriptor() != nil; got != (len(s.Timers) > 0) {
			t.Errorf("stage %s: descriptor has timer API %v, want %v", s.ID, got, len(s.Timers) > 0)
		}
	}
}

func coder(pl *plan.Plan, id string) *pipepb.Coder { return pl.Components.GetCoders()[id] }

// findTransform returns the ID of the transform with the given unique name.
func findTransform(t *testing.T, p *pipepb.Pipeline, name string) string {
	t.Helper()
	for id, tr := range p.GetComponents().GetTransforms() {
		if tr.GetUniqueName() == name {
			return id
		}
	}
	t.Fatalf("no transform named %q", name)
	return ""
}

// outputPColl returns the single output of the named transform.
func outputPColl(t *testing.T, p *pipepb.Pipeline, name string) *pipepb.PCollection {
	t.Helper()
	tr := p.GetComponents().GetTransforms()[findTransform(t, p, name)]
	for _, pc := range tr.GetOutputs() {
		return p.GetComponents().GetPcollections()[pc]
	}
	t.Fatalf("transform %q has no output", name)
	return nil
}

func TestValidateErrors(t *testing.T) {
	const (
		badTransform = "beam:transform:weir_test_unknown:v1"
		badCoder     = "beam:coder:weir_test_unknown:v1"
		badWindowFn  = "beam:window_fn:weir_test_custom:v1"
		badState     = "beam:user_state:weir_test_unknown:v1"
	)
	simple := func(t *testing.T, s beam.Scope) {
		beam.ParDo(s, upper, beam.Create(s, "a"))
	}
	windowed := func(t *testing.T, s beam.Scope) {
		kv := beam.ParDo(s, pair, beam.Create(s, "a"))
		beam.GroupByKey(s, beam.WindowInto(s, window.NewFixedWindows(time.Minute), kv))
	}
	tests := []struct {
		name   string
		env    func(t *testing.T) *pipepb.Environment // default loopback
		build  func(t *testing.T, s beam.Scope)
		mutate func(t *testing.T, p *pipepb.Pipeline) []string // returns more wanted substrings
		want   []string                                        // substrings of the error
	}{
		{
			name:  "unknown transform URN names the transform and the URN",
			build: simple,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				p.Components.Transforms[findTransform(t, p, "plan_test.upper")].Spec.Urn = badTransform
				return nil
			},
			want: []string{`transform "plan_test.upper"`, badTransform, "does not support"},
		},
		{
			name:  "leaf transform without URN",
			build: simple,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				p.Components.Transforms[findTransform(t, p, "plan_test.upper")].Spec = nil
				return nil
			},
			want: []string{`transform "plan_test.upper"`, "no URN"},
		},
		{
			name:  "unknown window coder names the coder, its URN and the window fn",
			build: windowed,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				ws := p.Components.WindowingStrategies[outputPColl(t, p, "WindowInto").GetWindowingStrategyId()]
				p.Components.Coders[ws.GetWindowCoderId()].Spec.Urn = badCoder
				return []string{fmt.Sprintf("window coder %q", ws.GetWindowCoderId()), ws.GetWindowFn().GetUrn()}
			},
			want: []string{badCoder, "must decode windows"},
		},
		{
			name:  "missing window coder is named",
			build: windowed,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				ws := p.Components.WindowingStrategies[outputPColl(t, p, "WindowInto").GetWindowingStrategyId()]
				ws.WindowCoderId = "weir_test_missing"
				return nil
			},
			want: []string{`window coder "weir_test_missing"`, "missing"},
		},
		{
			name:  "unsupported window fn names the windowing strategy and the window fn",
			build: windowed,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				id := outputPColl(t, p, "WindowInto").GetWindowingStrategyId()
				p.Components.WindowingStrategies[id].WindowFn.Urn = badWindowFn
				return []string{fmt.Sprintf("windowing strategy %q", id)}
			},
			want: []string{badWindowFn, "does not support"},
		},
		{
			name: "docker environment is refused with a hint",
			env: func(t *testing.T) *pipepb.Environment {
				env, err := graphx.CreateEnvironment(context.Background(), graphx.URNEnvDocker, func(context.Context) string { return "apache/beam_go_sdk:2.77.0" })
				if err != nil {
					t.Fatal(err)
				}
				return env
			},
			build: simple,
			want:  []string{"environment", graphx.URNEnvDocker, "--environment_type=LOOPBACK or PROCESS"},
		},
		{
			name: "TestStream served from an endpoint is refused by name",
			build: func(t *testing.T, s beam.Scope) {
				c := teststream.NewConfig()
				if err := c.AddElements(1000, "a", "b"); err != nil {
					t.Fatal(err)
				}
				beam.ParDo(s, upper, teststream.Create(s, c))
			},
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				// The Go SDK names its TestStream transform "External".
				tr := p.Components.Transforms[findTransform(t, p, "External")]
				ts := &pipepb.TestStreamPayload{}
				if err := proto.Unmarshal(tr.GetSpec().GetPayload(), ts); err != nil {
					t.Fatal(err)
				}
				ts.Endpoint = &pipepb.ApiServiceDescriptor{Url: "127.0.0.1:1"}
				b, err := proto.Marshal(ts)
				if err != nil {
					t.Fatal(err)
				}
				tr.Spec.Payload = b
				return []string{`transform "External"`, "TestStream served from 127.0.0.1:1"}
			},
		},
		{
			name: "unknown state protocol is refused",
			build: func(t *testing.T, s beam.Scope) {
				kv := beam.ParDo(s, pair, beam.Create(s, "a"))
				beam.ParDo(s, &orderedListFn{L: state.MakeOrderedListState[int]("list")}, kv)
			},
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				tr := p.Components.Transforms[findTransform(t, p, "plan_test.orderedListFn")]
				pdo := &pipepb.ParDoPayload{}
				if err := proto.Unmarshal(tr.GetSpec().GetPayload(), pdo); err != nil {
					t.Fatal(err)
				}
				pdo.StateSpecs["list"].Protocol.Urn = badState
				b, err := proto.Marshal(pdo)
				if err != nil {
					t.Fatal(err)
				}
				tr.Spec.Payload = b
				return nil
			},
			want: []string{`transform "plan_test.orderedListFn"`, `state "list"`, badState},
		},
		{
			name:  "unsupported requirement",
			build: simple,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				p.Requirements = append(p.Requirements, plan.ReqTimeSortedInput)
				return nil
			},
			want: []string{plan.ReqTimeSortedInput, "not supported"},
		},
		{
			name:  "every problem is reported together",
			build: windowed,
			mutate: func(t *testing.T, p *pipepb.Pipeline) []string {
				p.Components.Transforms[findTransform(t, p, "plan_test.pair")].Spec.Urn = badTransform
				id := outputPColl(t, p, "WindowInto").GetWindowingStrategyId()
				p.Components.WindowingStrategies[id].WindowFn.Urn = badWindowFn
				p.Components.Coders[p.Components.WindowingStrategies[id].GetWindowCoderId()].Spec.Urn = badCoder
				return nil
			},
			want: []string{`transform "plan_test.pair"`, badTransform, badWindowFn, badCoder},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := loopbackEnv(t)
			if tc.env != nil {
				env = tc.env(t)
			}
			pipe := marshal(t, env, func(s beam.Scope) { tc.build(t, s) })
			want := tc.want
			if tc.mutate != nil {
				want = append(slices.Clone(want), tc.mutate(t, pipe)...)
			}
			err := plan.Validate(pipe)
			if err == nil {
				t.Fatalf("Validate succeeded, want an error containing %q", want)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate error %q does not contain %q", err, w)
				}
			}
			if _, berr := plan.Build(pipe, plan.Options{LiftCombiners: true}); berr == nil || berr.Error() != err.Error() {
				t.Errorf("Build error = %v, want the Validate error", berr)
			}
		})
	}
}

// TestValidateAcceptsUnknownCoders: a coder weir does not know (every SDK
// has its own, such as the TypeScript SDK's genericobjectjs) is opaque
// bytes. The pipeline is accepted and planned, every PCollection that
// crosses a stage boundary travels in a coder the runner can walk, and a
// GroupByKey whose key coder is unknown sees its key length-prefixed, so
// that it groups by the key's encoded bytes.
func TestValidateAcceptsUnknownCoders(t *testing.T) {
	const opaque = "beam:coder:genericobjectjs:v1"
	windowed := func(s beam.Scope) {
		kv := beam.ParDo(s, pair, beam.Create(s, "a"))
		beam.ParDo(s, format, beam.GroupByKey(s, beam.WindowInto(s, window.NewFixedWindows(time.Minute), kv)))
	}
	tests := []struct {
		name      string
		component int // of the KV coder made opaque
		wantKey   string
	}{
		{name: "key coder", component: 0, wantKey: "length_prefix"},
		{name: "value coder", component: 1, wantKey: "string_utf8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pipe := marshal(t, loopbackEnv(t), windowed)
			kv := pipe.Components.Coders[outputPColl(t, pipe, "plan_test.pair").GetCoderId()]
			pipe.Components.Coders[kv.GetComponentCoderIds()[tc.component]].Spec.Urn = opaque
			if err := plan.Validate(pipe); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			pl, err := plan.Build(pipe, plan.Options{LiftCombiners: true})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			for id, pc := range pl.PColls {
				if _, err := wire.Build(pl.Components.GetCoders(), pc.WireCoder); err != nil {
					t.Errorf("PCollection %s travels in a coder weir cannot walk: %v", id, err)
				}
			}
			gbks := 0
			for _, s := range pl.Stages {
				if s.Kind != plan.KindGBK {
					continue
				}
				gbks++
				c, err := wire.Build(pl.Components.GetCoders(), s.InputKV)
				if err != nil {
					t.Fatalf("GBK %s input: %v", s.ID, err)
				}
				if c.URN != wire.URNKV {
					t.Fatalf("GBK %s input is %s, want a kv", s.ID, c)
				}
				if got := c.Components[0].String(); !strings.HasPrefix(got, tc.wantKey) {
					t.Errorf("GBK %s key coder is %s, want %s", s.ID, got, tc.wantKey)
				}
				if tc.component == 1 && !strings.HasPrefix(c.Components[1].String(), "length_prefix") {
					t.Errorf("GBK %s value coder is %s, want it length-prefixed", s.ID, c.Components[1])
				}
			}
			if gbks != 1 {
				t.Errorf("%d GBK stages, want 1", gbks)
			}
		})
	}
}
