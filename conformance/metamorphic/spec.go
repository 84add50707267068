package metamorphic

import (
	"fmt"
	"sort"
	"strings"
)

// ElemType is what a collection holds: KV<int64,int64> or int64.
type ElemType uint8

const (
	KVType ElemType = iota
	NumType
)

func (t ElemType) String() string {
	if t == NumType {
		return "int64"
	}
	return "KV<int64,int64>"
}

// Coll is a PCollection of the generated pipeline: its element type and
// windowing, and what the model knows about it.
type Coll struct {
	ID   int
	Type ElemType
	Win  WinFn
	// TsKnown: the model knows every element's event time (not after a
	// processing-time timer, whose output time is the wall clock's).
	TsKnown bool
	// Multi: an element may be in several windows (sliding windows before
	// a grouping). The Go SDK's WindowInto does not explode such elements,
	// so the generator does not re-window them.
	Multi bool
	// Bounded: every value is in [0, Mod) (not a raw sum).
	Bounded bool
	// TimerOut: may hold elements emitted after the watermark reached
	// their time: output of event-time timers or of a side-input ParDo
	// (see knownBugLatePaneAtWindowEnd).
	TimerOut bool
}

func (c Coll) String() string {
	s := fmt.Sprintf("c%d %s %s", c.ID, c.Type, c.Win)
	if !c.TsKnown {
		s += " ts?"
	}
	return s
}

// Step is one transform of a generated pipeline: its parameters, and its
// meaning on the model's elements. The Beam side (build.go) switches on the
// concrete type.
type Step interface {
	// Kind names the transform in descriptions.
	Kind() string
	// Eval computes the step's outputs from its inputs' elements.
	Eval(ins [][]Elem, inColls []Coll) ([][]Elem, error)
}

// Op is a Step applied to collections.
type Op struct {
	ID      int // its index in the generated pipeline (kept by Prune)
	Step    Step
	In, Out []int
}

// Sink records one collection's elements exactly once (sink.go).
type Sink struct {
	Name string
	Coll int
}

// Spec is a generated pipeline: collections, the ops that make them (in
// topological order) and the sinks.
type Spec struct {
	Seed  uint64
	Colls []Coll
	Ops   []Op
	Sinks []Sink
}

// Describe renders the pipeline readably, one op per line.
func (s *Spec) Describe() string {
	var b strings.Builder
	for _, op := range s.Ops {
		ins := make([]string, len(op.In))
		for i, c := range op.In {
			ins[i] = fmt.Sprintf("c%d", c)
		}
		outs := make([]string, len(op.Out))
		for i, c := range op.Out {
			outs[i] = s.Colls[c].String()
		}
		fmt.Fprintf(&b, "  %s <- %s%+v (%s)\n", strings.Join(outs, ", "), op.Step.Kind(), op.Step, strings.Join(ins, ", "))
	}
	for _, sk := range s.Sinks {
		fmt.Fprintf(&b, "  sink %s <- c%d\n", sk.Name, sk.Coll)
	}
	return b.String()
}

// Eval runs the model: the elements of every collection the ops make.
func (s *Spec) Eval() (map[int][]Elem, error) {
	out := map[int][]Elem{}
	for i, op := range s.Ops {
		ins := make([][]Elem, len(op.In))
		inColls := make([]Coll, len(op.In))
		for j, c := range op.In {
			got, ok := out[c]
			if !ok {
				return nil, fmt.Errorf("op %d (%s): input c%d is not made before it", i, op.Step.Kind(), c)
			}
			ins[j], inColls[j] = got, s.Colls[c]
		}
		res, err := op.Step.Eval(ins, inColls)
		if err != nil {
			return nil, fmt.Errorf("op %d (%s): %w", i, op.Step.Kind(), err)
		}
		if len(res) != len(op.Out) {
			return nil, fmt.Errorf("op %d (%s): %d outputs, want %d", i, op.Step.Kind(), len(res), len(op.Out))
		}
		for j, c := range op.Out {
			out[c] = res[j]
		}
	}
	return out, nil
}

// Record is the canonical line a sink writes for an element of c.
func Record(c Coll, e Elem) string {
	var b strings.Builder
	if c.Type == KVType {
		fmt.Fprintf(&b, "k=%d ", e.K)
	}
	fmt.Fprintf(&b, "v=%d w=%s", e.V, e.W)
	if c.TsKnown {
		fmt.Fprintf(&b, " t=%d", e.T)
	}
	return b.String()
}

// Expected is the model's output: for each sink, record -> count.
func (s *Spec) Expected() (map[string]map[string]int, error) {
	elems, err := s.Eval()
	if err != nil {
		return nil, err
	}
	want := map[string]map[string]int{}
	for _, sk := range s.Sinks {
		m := map[string]int{}
		c := s.Colls[sk.Coll]
		for _, e := range elems[sk.Coll] {
			m[Record(c, e)]++
		}
		want[sk.Name] = m
	}
	return want, nil
}

// Prune drops ops none of whose outputs reach a sink, and returns the
// pruned copy (collections keep their IDs).
func (s *Spec) Prune() *Spec {
	used := map[int]bool{}
	for _, sk := range s.Sinks {
		used[sk.Coll] = true
	}
	keep := make([]bool, len(s.Ops))
	for i := len(s.Ops) - 1; i >= 0; i-- {
		for _, c := range s.Ops[i].Out {
			if used[c] {
				keep[i] = true
			}
		}
		if keep[i] {
			for _, c := range s.Ops[i].In {
				used[c] = true
			}
		}
	}
	out := &Spec{Seed: s.Seed, Colls: s.Colls, Sinks: append([]Sink(nil), s.Sinks...)}
	for i, op := range s.Ops {
		if keep[i] {
			out.Ops = append(out.Ops, op)
		}
	}
	return out
}

// Size is the number of source elements (the sum of every source's N).
func (s *Spec) Size() int64 {
	var n int64
	for _, op := range s.Ops {
		if sz, ok := op.Step.(sized); ok {
			n += sz.size()
		}
	}
	return n
}

// sized is a source whose element count can shrink.
type sized interface {
	size() int64
	withSize(n int64) Step
}

// Scaled returns a copy with every source's element count multiplied by
// num/den (at least 1).
func (s *Spec) Scaled(num, den int64) *Spec {
	out := &Spec{Seed: s.Seed, Colls: s.Colls, Sinks: s.Sinks, Ops: append([]Op(nil), s.Ops...)}
	for i, op := range out.Ops {
		if sz, ok := op.Step.(sized); ok {
			out.Ops[i].Step = sz.withSize(max(1, sz.size()*num/den))
		}
	}
	return out
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
