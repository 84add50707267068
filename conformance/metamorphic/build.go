package metamorphic

import (
	"fmt"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
)

// Build translates spec into a Beam pipeline whose sinks write under dir.
// If failOp >= 0 and the op with that ID runs a DoFn of ours, the DoFn fails its bundle
// once, on its failAt-th element, under token; failable reports whether it
// does.
func Build(spec *Spec, dir string, failOp int, failAt int64, token string) (p *beam.Pipeline, failable bool, err error) {
	p, root := beam.NewPipelineWithRoot()
	colls := map[int]beam.PCollection{}
	for i, op := range spec.Ops {
		s := root.Scope(fmt.Sprintf("op%d %s", i, op.Step.Kind()))
		var fail failPoint
		if op.ID == failOp {
			fail = failPoint{Token: token, At: failAt}
		}
		ins := make([]beam.PCollection, len(op.In))
		for j, c := range op.In {
			ins[j] = colls[c]
		}
		outs, usedFail, err := buildOp(s, op, spec, ins, fail)
		if err != nil {
			return nil, false, fmt.Errorf("op %d (%s): %w", i, op.Step.Kind(), err)
		}
		failable = failable || (usedFail && op.ID == failOp)
		for j, c := range op.Out {
			colls[c] = outs[j]
		}
	}
	if err := addSinks(root, spec, colls, dir); err != nil {
		return nil, false, err
	}
	return p, failable, nil
}

func ms(d int64) time.Duration { return time.Duration(d) * time.Millisecond }

// beamWindowFn is the Beam WindowFn of f.
func beamWindowFn(f WinFn) *window.Fn {
	switch f.Kind {
	case FixedWindows:
		return window.NewFixedWindows(ms(f.Size))
	case SlidingWindows:
		return window.NewSlidingWindows(ms(f.Period), ms(f.Size))
	case SessionWindows:
		return window.NewSessions(ms(f.Size))
	}
	return window.NewGlobalWindows()
}

// buildOp adds one op; usedFail reports whether its DoFn carries fail.
func buildOp(s beam.Scope, op Op, spec *Spec, ins []beam.PCollection, fail failPoint) ([]beam.PCollection, bool, error) {
	one := func(c beam.PCollection) []beam.PCollection { return []beam.PCollection{c} }
	kv := len(op.In) > 0 && spec.Colls[op.In[0]].Type == KVType
	switch st := op.Step.(type) {
	case GenSource:
		return one(beam.ParDo(s, &genSDF{GenSource: st, Fail: fail}, beam.Impulse(s))), true, nil
	case ImpulseSource:
		return one(beam.ParDo(s, &impulseGenFn{Events: st.Events, Fail: fail}, beam.Impulse(s))), true, nil
	case ImpulseTwins:
		imp := beam.Impulse(s)
		a := beam.ParDo(s, &impulseGenFn{Events: st.A, Fail: fail}, imp)
		b := beam.ParDo(s, &impulseGenFn{Events: st.B}, imp)
		return one(beam.Flatten(s, a, b)), true, nil
	case CreateSource:
		return one(beam.CreateList(s, st.Values())), false, nil
	case MapKV:
		return one(beam.ParDo(s, &mapKVFn{MapKV: st, Fail: fail}, ins[0])), true, nil
	case TwinMap:
		a := beam.ParDo(s, &mapKVFn{MapKV: st.A, Fail: fail}, ins[0])
		b := beam.ParDo(s, &mapKVFn{MapKV: st.B}, ins[0])
		return one(beam.Flatten(s, a, b)), true, nil
	case Filter:
		if kv {
			return one(beam.ParDo(s, &filterKVFn{Filter: st, Fail: fail}, ins[0])), true, nil
		}
		return one(beam.ParDo(s, &filterNumFn{Filter: st, Fail: fail}, ins[0])), true, nil
	case Fanout:
		if kv {
			return one(beam.ParDo(s, &fanoutKVFn{Fanout: st, Fail: fail}, ins[0])), true, nil
		}
		return one(beam.ParDo(s, &fanoutNumFn{Fanout: st, Fail: fail}, ins[0])), true, nil
	case Route:
		var a, b beam.PCollection
		if kv {
			a, b = beam.ParDo2(s, &routeKVFn{Fail: fail}, ins[0])
		} else {
			a, b = beam.ParDo2(s, &routeNumFn{Fail: fail}, ins[0])
		}
		return []beam.PCollection{a, b}, true, nil
	case DropKey:
		return one(beam.ParDo(s, &dropKeyFn{Fail: fail}, ins[0])), true, nil
	case KeyBy:
		return one(beam.ParDo(s, &keyByFn{KeyBy: st, Fail: fail}, ins[0])), true, nil
	case Restamp:
		if kv {
			return one(beam.ParDo(s, &restampKVFn{Restamp: st, Fail: fail}, ins[0])), true, nil
		}
		return one(beam.ParDo(s, &restampNumFn{Restamp: st, Fail: fail}, ins[0])), true, nil
	case WindowInto:
		return one(beam.WindowInto(s, beamWindowFn(st.Fn), ins[0])), false, nil
	case Reshuffle:
		return one(beam.Reshuffle(s, ins[0])), false, nil
	case Flatten:
		return one(beam.Flatten(s, ins...)), false, nil
	case GroupByKey:
		return one(beam.ParDo(s, &groupFn{GroupByKey: st, Fail: fail}, beam.GroupByKey(s, ins[0]))), true, nil
	case CoGroupByKey:
		cg := beam.CoGroupByKey(s, ins...)
		switch len(ins) {
		case 2:
			return one(beam.ParDo(s, &cogbk2Fn{Fail: fail}, cg)), true, nil
		case 3:
			return one(beam.ParDo(s, &cogbk3Fn{Fail: fail}, cg)), true, nil
		}
		return nil, false, fmt.Errorf("CoGroupByKey of %d inputs", len(ins))
	case Combine:
		switch st.Fn {
		case CombineSumPerKey:
			return one(stats.SumPerKey(s, ins[0])), false, nil
		case CombineMaxPerKey:
			return one(beam.CombinePerKey(s, maxInt64, ins[0])), false, nil
		case CombineMeanPerKey:
			return one(beam.ParDo(s, meanOut, stats.MeanPerKey(s, ins[0]))), false, nil
		case CombineRangePerKey:
			return one(beam.CombinePerKey(s, &rangeFn{}, ins[0])), false, nil
		case CombineCount:
			return one(beam.ParDo(s, countOut, stats.Count(s, ins[0]))), false, nil
		case CombineGlobalSum:
			return one(stats.Sum(s, ins[0])), false, nil
		}
	case SideInput:
		side := beam.SideInput{Input: ins[1]}
		switch st.Side {
		case SideIter:
			return one(beam.ParDo(s, &sideIterFn{SideInput: st, Fail: fail}, ins[0], side)), true, nil
		case SideSingleton:
			side.Input = stats.Sum(s, ins[1])
			return one(beam.ParDo(s, &sideSingletonFn{SideInput: st, Fail: fail}, ins[0], side)), true, nil
		case SideMultimap:
			return one(beam.ParDo(s, &sideMapFn{SideInput: st, Fail: fail}, ins[0], side)), true, nil
		}
	case Stateful:
		return one(beam.ParDo(s, newStatefulFn(st, fail), ins[0])), true, nil
	}
	return nil, false, fmt.Errorf("no Beam translation for %T", op.Step)
}
