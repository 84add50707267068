package plan

import (
	"fmt"
	"maps"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// wire chooses the coder every boundary PCollection travels in, and the
// data source and sink IDs of SDK stages.
func (b *builder) wire() error {
	for _, id := range sortedKeys(b.plan.PColls) {
		p := b.plan.PColls[id]
		elem, win, err := b.wireCoders(id)
		if err != nil {
			return err
		}
		p.ElemCoder = elem
		p.WireCoder = wire.AddWindowedValue(b.comps.Coders, elem, win)
	}
	for _, s := range b.plan.Stages {
		switch s.Kind {
		case KindSDK:
			s.SourceID = s.ID + "_source"
			for _, pc := range s.Outputs {
				s.SinkIDs[pc] = s.ID + "_sink_" + pc
			}
		case KindGBK:
			s.InputKV = b.plan.PColls[s.Input].ElemCoder
			if _, err := wire.Build(b.comps.Coders, s.InputKV); err != nil {
				return fmt.Errorf("group by key %q: %w", s.Name, err)
			}
		}
	}
	return nil
}

func (b *builder) wireCoders(pcID string) (elem, win string, err error) {
	pc := b.comps.GetPcollections()[pcID]
	if pc == nil {
		return "", "", fmt.Errorf("pcollection %q is not defined", pcID)
	}
	elem, err = wire.LengthPrefixUnknown(b.comps.Coders, pc.GetCoderId())
	if err != nil {
		return "", "", fmt.Errorf("pcollection %q: %w", pcID, err)
	}
	ws := b.comps.GetWindowingStrategies()[pc.GetWindowingStrategyId()]
	if ws == nil {
		return "", "", fmt.Errorf("pcollection %q: windowing strategy %q is not defined", pcID, pc.GetWindowingStrategyId())
	}
	return elem, ws.GetWindowCoderId(), nil
}

// Descriptor builds the ProcessBundleDescriptor of an SDK stage; api is
// the Fn API server the harness reads and writes data and state on.
func (p *Plan) Descriptor(s *Stage, api *pipepb.ApiServiceDescriptor) (*fnpb.ProcessBundleDescriptor, error) {
	if s.Kind != KindSDK {
		return nil, fmt.Errorf("stage %s is not an SDK stage", s.ID)
	}
	comps := p.Components
	d := &fnpb.ProcessBundleDescriptor{
		Id:                  s.ID,
		Transforms:          map[string]*pipepb.PTransform{},
		Pcollections:        map[string]*pipepb.PCollection{},
		WindowingStrategies: comps.GetWindowingStrategies(),
		Coders:              comps.GetCoders(),
		Environments:        comps.GetEnvironments(),
	}
	addPColl := func(id string) error {
		if _, ok := d.Pcollections[id]; ok {
			return nil
		}
		pc := comps.GetPcollections()[id]
		if pc == nil {
			return fmt.Errorf("stage %s: pcollection %q is not defined", s.ID, id)
		}
		elem, err := wire.LengthPrefixUnknown(comps.Coders, pc.GetCoderId())
		if err != nil {
			return fmt.Errorf("stage %s: pcollection %q: %w", s.ID, id, err)
		}
		c := proto.Clone(pc).(*pipepb.PCollection)
		c.CoderId = elem
		d.Pcollections[id] = c
		return nil
	}
	for _, id := range s.Transforms {
		t := comps.GetTransforms()[id]
		d.Transforms[id] = t
		for _, pc := range t.GetInputs() {
			if err := addPColl(pc); err != nil {
				return nil, err
			}
		}
		for _, pc := range t.GetOutputs() {
			if err := addPColl(pc); err != nil {
				return nil, err
			}
		}
	}
	port := func(coder string) []byte {
		b, _ := proto.Marshal(&fnpb.RemoteGrpcPort{ApiServiceDescriptor: api, CoderId: coder})
		return b
	}
	in := p.PColls[s.Input]
	if in == nil {
		return nil, fmt.Errorf("stage %s: input %q is not a boundary pcollection", s.ID, s.Input)
	}
	if err := addPColl(s.Input); err != nil {
		return nil, err
	}
	d.Transforms[s.SourceID] = &pipepb.PTransform{
		UniqueName: s.SourceID,
		Spec:       &pipepb.FunctionSpec{Urn: URNDataSource, Payload: port(in.WireCoder)},
		Outputs:    map[string]string{"o0": s.Input},
	}
	for _, pc := range s.Outputs {
		d.Transforms[s.SinkIDs[pc]] = &pipepb.PTransform{
			UniqueName: s.SinkIDs[pc],
			Spec:       &pipepb.FunctionSpec{Urn: URNDataSink, Payload: port(p.PColls[pc].WireCoder)},
			Inputs:     map[string]string{"i0": pc},
		}
	}
	if len(s.SideInputs) > 0 || s.Stateful {
		d.StateApiServiceDescriptor = api
	}
	if len(s.Timers) > 0 {
		d.TimerApiServiceDescriptor = api
	}
	return d, nil
}

// DrainDescriptorID names the drain variant of a splittable stage's descriptor.
func DrainDescriptorID(s *Stage) string { return s.ID + "_drain" }

// DrainDescriptor is the descriptor a splittable stage runs while the job
// drains: its restrictions pass through the SDF's TruncateRestriction
// before they are processed, so unbounded sources finish.
func (p *Plan) DrainDescriptor(s *Stage, api *pipepb.ApiServiceDescriptor) (*fnpb.ProcessBundleDescriptor, error) {
	if s.Splittable == "" {
		return nil, fmt.Errorf("stage %s is not splittable", s.ID)
	}
	d, err := p.Descriptor(s, api)
	if err != nil {
		return nil, err
	}
	d.Id = DrainDescriptorID(s)
	process := proto.Clone(d.Transforms[s.Splittable]).(*pipepb.PTransform)
	local, in := mainInput(process)
	if in == "" {
		return nil, fmt.Errorf("stage %s: splittable transform %q has no main input", s.ID, process.GetUniqueName())
	}
	truncated := s.ID + "_truncated"
	pc := proto.Clone(d.Pcollections[in]).(*pipepb.PCollection)
	pc.UniqueName = truncated
	d.Pcollections[truncated] = pc
	inputs := maps.Clone(process.GetInputs())
	d.Transforms[s.ID+"_truncate"] = &pipepb.PTransform{
		UniqueName:    process.GetUniqueName() + "/Truncate",
		Spec:          &pipepb.FunctionSpec{Urn: URNTruncateSized, Payload: process.GetSpec().GetPayload()},
		Inputs:        inputs,
		Outputs:       map[string]string{"i0": truncated},
		EnvironmentId: process.GetEnvironmentId(),
	}
	process.Inputs = maps.Clone(inputs)
	process.Inputs[local] = truncated
	d.Transforms[s.Splittable] = process
	return d, nil
}
