package plan

import (
	"fmt"
	"sort"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// topoSort orders leaves so every transform comes after the producers of
// all its inputs.
func topoSort(comps *pipepb.Components, leaves []string) ([]string, error) {
	producer := map[string]string{}
	for _, id := range leaves {
		for _, pc := range comps.GetTransforms()[id].GetOutputs() {
			producer[pc] = id
		}
	}
	indeg := map[string]int{}
	next := map[string][]string{}
	for _, id := range leaves {
		indeg[id] += 0
		seen := map[string]bool{}
		for _, pc := range comps.GetTransforms()[id].GetInputs() {
			p, ok := producer[pc]
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			indeg[id]++
			next[p] = append(next[p], id)
		}
	}
	pos := map[string]int{}
	for i, id := range leaves {
		pos[id] = i
	}
	var ready, out []string
	for _, id := range leaves {
		if indeg[id] == 0 {
			ready = append(ready, id)
		}
	}
	for len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return pos[ready[i]] < pos[ready[j]] })
		id := ready[0]
		ready = ready[1:]
		out = append(out, id)
		for _, n := range next[id] {
			if indeg[n]--; indeg[n] == 0 {
				ready = append(ready, n)
			}
		}
	}
	if len(out) != len(leaves) {
		return nil, fmt.Errorf("pipeline graph has a cycle")
	}
	return out, nil
}

// fuse groups SDK transforms into stages and records which stage feeds
// which.
func (b *builder) fuse(leaves []string) error {
	order, err := topoSort(b.comps, leaves)
	if err != nil {
		return err
	}
	comps := b.comps
	stageOf := map[string]*Stage{}    // transform → stage
	producedIn := map[string]*Stage{} // pcollection → stage
	flattens := map[string][]string{} // flatten output → inputs
	sidePColls := map[*Stage]map[string]bool{}
	newStage := func(kind Kind, t *pipepb.PTransform) *Stage {
		s := &Stage{ID: fmt.Sprintf("s%d", len(b.plan.Stages)+1), Kind: kind, Name: t.GetUniqueName(), SinkIDs: map[string]string{}}
		b.plan.Stages = append(b.plan.Stages, s)
		sidePColls[s] = map[string]bool{}
		return s
	}
	for _, id := range order {
		t := comps.GetTransforms()[id]
		urn := t.GetSpec().GetUrn()
		var s *Stage
		switch urn {
		case URNImpulse:
			s = newStage(KindImpulse, t)
		case URNTestStream:
			s = newStage(KindTestStream, t)
		case URNGBK:
			s = newStage(KindGBK, t)
			s.Input = sortedValues(t.GetInputs())[0]
			in := comps.GetPcollections()[s.Input]
			s.WindowingStrategy = comps.GetWindowingStrategies()[in.GetWindowingStrategyId()]
		case URNFlatten:
			out := sortedValues(t.GetOutputs())[0]
			flattens[out] = sortedValues(t.GetInputs())
			continue
		default:
			_, main := mainInput(t)
			sides := b.sideInputs(id, t)
			cand := producedIn[main]
			stateful := isStateful(t)
			if cand != nil && cand.Kind == KindSDK && urn != URNProcessSizedElements && !stateful && cand.EnvID == t.GetEnvironmentId() && covers(sidePColls[cand], sides) {
				s = cand
			} else {
				s = newStage(KindSDK, t)
				s.Input = main
				s.EnvID = t.GetEnvironmentId()
				s.RoundRobinInput = urn == URNProcessSizedElements
				s.Stateful = stateful
			}
			if stateful {
				if err := b.addTimers(s, id, t); err != nil {
					return err
				}
			}
			for _, si := range sides {
				s.SideInputs = append(s.SideInputs, si)
				sidePColls[s][si.PColl] = true
			}
			if urn == URNProcessSizedElements {
				s.Splittable = id
			}
		}
		s.Transforms = append(s.Transforms, id)
		stageOf[id] = s
		for _, pc := range sortedValues(t.GetOutputs()) {
			producedIn[pc] = s
		}
	}
	b.link(stageOf, producedIn, flattens)
	return nil
}

func covers(have map[string]bool, want []SideInput) bool {
	for _, si := range want {
		if !have[si.PColl] {
			return false
		}
	}
	return true
}

func (b *builder) sideInputs(id string, t *pipepb.PTransform) []SideInput {
	pdo := &pipepb.ParDoPayload{}
	if err := proto.Unmarshal(t.GetSpec().GetPayload(), pdo); err != nil {
		return nil
	}
	var out []SideInput
	for _, local := range sortedKeys(pdo.GetSideInputs()) {
		spec := pdo.GetSideInputs()[local]
		out = append(out, SideInput{
			Transform: id,
			Local:     local,
			PColl:     t.GetInputs()[local],
			Multimap:  spec.GetAccessPattern().GetUrn() == URNMultimapSideInput,
		})
	}
	return out
}

// link records every PCollection that crosses a stage boundary, its
// producer, and its consumers (through Flattens, which the runner executes
// by sending each input to the consumers of the output).
func (b *builder) link(stageOf map[string]*Stage, producedIn map[string]*Stage, flattens map[string][]string) {
	pcoll := func(id string) *PColl {
		p, ok := b.plan.PColls[id]
		if !ok {
			p = &PColl{ID: id, Producer: producedIn[id]}
			b.plan.PColls[id] = p
		}
		return p
	}
	// Direct consumers: stage inputs fed from outside the stage.
	direct := map[string][]Consumer{}
	for _, s := range b.plan.Stages {
		if s.Input != "" {
			part := Forward
			switch {
			case s.Kind == KindGBK:
				part = Hash
			case s.Stateful:
				part = Hash
			case s.RoundRobinInput:
				part = RoundRobin
			}
			direct[s.Input] = append(direct[s.Input], Consumer{Stage: s, Port: 0, Partition: part})
			pcoll(s.Input)
		}
		for i, si := range s.SideInputs {
			direct[si.PColl] = append(direct[si.PColl], Consumer{Stage: s, Port: i + 1, Partition: Broadcast})
			pcoll(si.PColl)
		}
	}
	inputsOf := map[string][]string{} // pcollection → flatten outputs it feeds
	for out, ins := range flattens {
		for _, in := range ins {
			inputsOf[in] = append(inputsOf[in], out)
		}
	}
	// A PCollection flattened n times into one output is delivered n
	// times, so consumers repeat; flattens form a DAG, so this ends.
	var resolve func(pc string) []Consumer
	resolve = func(pc string) []Consumer {
		out := append([]Consumer(nil), direct[pc]...)
		outs := inputsOf[pc]
		sort.Strings(outs)
		for _, f := range outs {
			out = append(out, resolve(f)...)
		}
		return out
	}
	for pc, s := range producedIn {
		// Stage inputs are fed from outside their stage by construction,
		// so every consumer found here is in another stage.
		cons := resolve(pc)
		if len(cons) == 0 {
			continue
		}
		pcoll(pc).Consumers = cons
		s.Outputs = append(s.Outputs, pc)
	}
	for _, s := range b.plan.Stages {
		sort.Strings(s.Outputs)
	}
}

func isStateful(t *pipepb.PTransform) bool {
	if t.GetSpec().GetUrn() != URNParDo {
		return false
	}
	pdo := &pipepb.ParDoPayload{}
	if err := proto.Unmarshal(t.GetSpec().GetPayload(), pdo); err != nil {
		return false
	}
	return len(pdo.GetStateSpecs())+len(pdo.GetTimerFamilySpecs()) > 0
}

// addTimers records a stateful transform's timer families, and rewrites
// its payload so timer keys are encoded like the keys of its input.
func (b *builder) addTimers(s *Stage, id string, t *pipepb.PTransform) error {
	pdo := &pipepb.ParDoPayload{}
	if err := proto.Unmarshal(t.GetSpec().GetPayload(), pdo); err != nil {
		return fmt.Errorf("transform %q: decoding ParDo payload: %w", t.GetUniqueName(), err)
	}
	if len(pdo.GetTimerFamilySpecs()) == 0 {
		return nil
	}
	for _, fam := range sortedKeys(pdo.GetTimerFamilySpecs()) {
		spec := pdo.GetTimerFamilySpecs()[fam]
		c, err := wire.LengthPrefixUnknown(b.comps.Coders, spec.GetTimerFamilyCoderId())
		if err != nil {
			return fmt.Errorf("transform %q timer %q: %w", t.GetUniqueName(), fam, err)
		}
		spec.TimerFamilyCoderId = c
		s.Timers = append(s.Timers, TimerFamily{Transform: id, Family: fam, Coder: c, Domain: spec.GetTimeDomain()})
	}
	payload, err := proto.Marshal(pdo)
	if err != nil {
		return fmt.Errorf("transform %q: encoding ParDo payload: %w", t.GetUniqueName(), err)
	}
	t.Spec.Payload = payload
	return nil
}
