package metamorphic

import "fmt"

// Variant is a smaller version of a failing run, for shrinking.
type Variant struct {
	Why      string
	Spec     *Spec
	Settings Settings
}

// prefixVariants keep one collection's sink only, earliest collection
// first: the first that still fails is the shortest failing prefix of the
// pipeline.
func prefixVariants(spec *Spec, set Settings) []Variant {
	var out []Variant
	for _, c := range spec.Colls {
		if len(spec.Sinks) == 1 && spec.Sinks[0].Coll == c.ID {
			continue
		}
		if !spec.makes(c.ID) {
			continue
		}
		v := &Spec{Seed: spec.Seed, Colls: spec.Colls, Ops: spec.Ops, Sinks: []Sink{{Name: fmt.Sprintf("s%d", c.ID), Coll: c.ID}}}
		out = append(out, Variant{Why: fmt.Sprintf("only a sink on c%d", c.ID), Spec: v.Prune(), Settings: set})
	}
	return out
}

// makes reports whether some op of spec makes collection c.
func (s *Spec) makes(c int) bool {
	for _, op := range s.Ops {
		for _, o := range op.Out {
			if o == c {
				return true
			}
		}
	}
	return false
}

// smallerVariants halve the input, drop one sink, or simplify settings.
func smallerVariants(spec *Spec, set Settings) []Variant {
	var out []Variant
	if half := spec.Scaled(1, 2); half.Size() < spec.Size() {
		out = append(out, Variant{Why: "half the input", Spec: half, Settings: set})
	}
	if len(spec.Sinks) > 1 {
		for i := range spec.Sinks {
			v := &Spec{Seed: spec.Seed, Colls: spec.Colls, Ops: spec.Ops}
			v.Sinks = append(append(v.Sinks, spec.Sinks[:i]...), spec.Sinks[i+1:]...)
			out = append(out, Variant{Why: "without sink " + spec.Sinks[i].Name, Spec: v.Prune(), Settings: set})
		}
	}
	simpler := func(why string, f func(s *Settings)) {
		s := set
		f(&s)
		if s != set {
			out = append(out, Variant{Why: why, Spec: spec, Settings: s})
		}
	}
	simpler("no checkpoints", func(s *Settings) { s.Checkpoint, s.Fault, s.FaultN = 0, "", 0 })
	simpler("no injected bundle failure", func(s *Settings) { s.FailOp, s.FailAt = -1, 0 })
	simpler("parallelism 1", func(s *Settings) { s.Parallelism = 1 })
	return out
}
