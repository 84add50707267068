package engine

import (
	"fmt"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
)

// sideInput holds one materialized side input, by encoded window.
type sideInput struct {
	spec     plan.SideInput
	wv       wire.WVCoder
	values   map[string][]byte            // window → concatenated values
	byKey    map[string]map[string][]byte // window → key → concatenated values (multimap)
	keyOrder map[string][][]byte          // window → keys in arrival order
	// raw keeps the chunks as they arrived when checkpointing is on: they
	// are the side input's part of a snapshot.
	raw     [][]byte
	keepRaw bool
}

func newSideInput(spec plan.SideInput, wv wire.WVCoder) *sideInput {
	return &sideInput{spec: spec, wv: wv, values: map[string][]byte{}, byKey: map[string]map[string][]byte{}, keyOrder: map[string][][]byte{}}
}

func (s *sideInput) add(data []byte) error {
	if s.keepRaw {
		s.raw = append(s.raw, data)
	}
	return s.wv.ForEach(data, func(e wire.Element) error {
		for _, w := range e.Windows {
			ws := string(w)
			s.values[ws] = append(s.values[ws], e.Value...)
			if !s.spec.Multimap {
				continue
			}
			k, v, err := s.wv.Elem.SplitKV(e.Value)
			if err != nil {
				return fmt.Errorf("side input %s: %w", s.spec.Local, err)
			}
			m := s.byKey[ws]
			if m == nil {
				m = map[string][]byte{}
				s.byKey[ws] = m
			}
			if _, ok := m[string(k)]; !ok {
				s.keyOrder[ws] = append(s.keyOrder[ws], append([]byte(nil), k...))
			}
			m[string(k)] = append(m[string(k)], v...)
		}
		return nil
	})
}

// sideState answers a bundle's side input state requests.
type sideState struct {
	inputs map[[2]string]*sideInput // (transform, local) → side input
}

const stateChunk = 2 << 20

func (h *sideState) HandleState(req *fnpb.StateRequest) *fnpb.StateResponse {
	data, err := h.lookup(req.GetStateKey())
	if err != nil {
		return &fnpb.StateResponse{Error: err.Error()}
	}
	get := req.GetGet()
	if get == nil {
		return &fnpb.StateResponse{Error: fmt.Sprintf("side inputs are read-only; got %T", req.GetRequest())}
	}
	return chunk(data, get.GetContinuationToken())
}

func (h *sideState) lookup(key *fnpb.StateKey) ([]byte, error) {
	find := func(t, l string) (*sideInput, error) {
		s := h.inputs[[2]string{t, l}]
		if s == nil {
			return nil, fmt.Errorf("no side input %q of transform %q", l, t)
		}
		return s, nil
	}
	switch k := key.GetType().(type) {
	case *fnpb.StateKey_IterableSideInput_:
		s, err := find(k.IterableSideInput.GetTransformId(), k.IterableSideInput.GetSideInputId())
		if err != nil {
			return nil, err
		}
		return s.values[string(k.IterableSideInput.GetWindow())], nil
	case *fnpb.StateKey_MultimapSideInput_:
		s, err := find(k.MultimapSideInput.GetTransformId(), k.MultimapSideInput.GetSideInputId())
		if err != nil {
			return nil, err
		}
		return s.byKey[string(k.MultimapSideInput.GetWindow())][string(k.MultimapSideInput.GetKey())], nil
	case *fnpb.StateKey_MultimapKeysSideInput_:
		s, err := find(k.MultimapKeysSideInput.GetTransformId(), k.MultimapKeysSideInput.GetSideInputId())
		if err != nil {
			return nil, err
		}
		var out []byte
		for _, key := range s.keyOrder[string(k.MultimapKeysSideInput.GetWindow())] {
			out = append(out, key...)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("state key %T is not supported by weir yet", key.GetType())
	}
}
