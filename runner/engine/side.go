package engine

import (
	"context"
	"fmt"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// sideInput is one side input of a stage. Its contents live in the
// subtask's Pebble DB (see state/side.go), by window, so memory does not
// grow with its size.
type sideInput struct {
	spec plan.SideInput
	wv   wire.WVCoder
	id   int // index among the stage's side inputs: its key space in the DB
	db   *state.DB
	// window maps a main input window to the side window it reads (nil:
	// unknown, the side input is ready only once it has ended).
	window sideWindowFn
}

func newSideInput(spec plan.SideInput, wv wire.WVCoder, id int, db *state.DB) *sideInput {
	return &sideInput{spec: spec, wv: wv, id: id, db: db}
}

// add stores a chunk of side input elements: the values of each window
// (and, for a multimap, of each key) go in as one run per chunk.
func (s *sideInput) add(data []byte) error {
	type run struct{ window, key, values []byte }
	var runs []*run
	index := map[string]*run{}
	err := s.wv.ForEach(data, func(e wire.Element) error {
		var k, v []byte
		if s.spec.Multimap {
			var err error
			if k, v, err = s.wv.Elem.SplitKV(e.Value); err != nil {
				return fmt.Errorf("side input %s: %w", s.spec.Local, err)
			}
		} else {
			v = e.Value
		}
		for _, w := range e.Windows {
			// The window's length first: (window, key) pairs are unambiguous.
			id := string(append(append(wire.AppendVarint(nil, uint64(len(w))), w...), k...))
			r := index[id]
			if r == nil {
				r = &run{window: w, key: k}
				index[id] = r
				runs = append(runs, r)
			}
			r.values = append(r.values, v...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	b := s.db.NewSideBatch()
	for _, r := range runs {
		if s.spec.Multimap {
			err = b.AddMulti(s.id, r.window, r.key, r.values)
		} else {
			err = b.AddValues(s.id, r.window, r.values)
		}
		if err != nil {
			b.Discard()
			return fmt.Errorf("side input %s: %w", s.spec.Local, err)
		}
	}
	if err := b.Commit(); err != nil {
		return fmt.Errorf("side input %s: %w", s.spec.Local, err)
	}
	return nil
}

// sideState answers a bundle's side input state requests from Pebble.
type sideState struct {
	inputs map[[2]string]*sideInput // (transform, local) → side input
	// chunk bounds the data of one state response (Limits.StateChunkBytes;
	// 0: the default).
	chunk int
}

// chunkBytes is the bound of one state response's data.
func (h *sideState) chunkBytes() int {
	if h != nil && h.chunk > 0 {
		return h.chunk
	}
	return DefaultLimits.StateChunkBytes
}

func (h *sideState) HandleState(req *fnpb.StateRequest) *fnpb.StateResponse {
	get := req.GetGet()
	if get == nil {
		return &fnpb.StateResponse{Error: fmt.Sprintf("side inputs are read-only; got %T", req.GetRequest())}
	}
	data, next, err := h.lookup(req.GetStateKey(), get.GetContinuationToken())
	if err != nil {
		return &fnpb.StateResponse{Error: err.Error()}
	}
	return &fnpb.StateResponse{Response: &fnpb.StateResponse_Get{Get: &fnpb.StateGetResponse{Data: data, ContinuationToken: next}}}
}

// lookup reads up to chunkBytes() of a side input state key from
// where token says, and returns the token of the rest.
func (h *sideState) lookup(key *fnpb.StateKey, token []byte) ([]byte, []byte, error) {
	find := func(t, l string) (*sideInput, error) {
		s := h.inputs[[2]string{t, l}]
		if s == nil {
			return nil, fmt.Errorf("no side input %q of transform %q", l, t)
		}
		return s, nil
	}
	var data, next []byte
	var s *sideInput
	var err error
	switch k := key.GetType().(type) {
	case *fnpb.StateKey_IterableSideInput_:
		r := k.IterableSideInput
		if s, err = find(r.GetTransformId(), r.GetSideInputId()); err == nil {
			data, next, err = s.db.ReadSideValues(s.id, r.GetWindow(), token, h.chunkBytes())
		}
	case *fnpb.StateKey_MultimapSideInput_:
		r := k.MultimapSideInput
		if s, err = find(r.GetTransformId(), r.GetSideInputId()); err == nil {
			data, next, err = s.db.ReadSideMulti(s.id, r.GetWindow(), r.GetKey(), token, h.chunkBytes())
		}
	case *fnpb.StateKey_MultimapKeysSideInput_:
		r := k.MultimapKeysSideInput
		if s, err = find(r.GetTransformId(), r.GetSideInputId()); err == nil {
			data, next, err = s.db.ReadSideKeys(s.id, r.GetWindow(), token, h.chunkBytes())
		}
	default:
		return nil, nil, fmt.Errorf("state key %T is not supported by weir yet", key.GetType())
	}
	if err != nil && s != nil {
		err = fmt.Errorf("side input %s of %s: %w", s.spec.Local, s.spec.Transform, err)
	}
	return data, next, err
}

// initSides sets up the stage's side inputs: their contents and the main
// input parked until they are ready go in the subtask's DB (the keyed
// state's if the stage is stateful, else one opened for them in dir).
func (t *sdkTask) initSides(ctx context.Context, dir string, cache *state.Cache) error {
	if len(t.stage.SideInputs) == 0 {
		return nil
	}
	p := t.e.plan
	if t.keyed != nil {
		t.sideDB = t.keyed.db
	} else {
		db, err := t.openState(ctx, dir, cache)
		if err != nil {
			return fmt.Errorf("stage %q: opening side input state: %w", t.stage.Name, err)
		}
		t.sideDB = db
	}
	fail := func(err error) error {
		if t.keyed == nil {
			t.sideDB.Close()
		}
		t.sideDB = nil
		return err
	}
	for i, si := range t.stage.SideInputs {
		c, err := wire.Build(p.Components.GetCoders(), p.PColls[si.PColl].WireCoder)
		if err != nil {
			return fail(fmt.Errorf("side input %s of stage %s: %w", si.Local, t.stage.ID, err))
		}
		wv, err := wire.NewWV(c)
		if err != nil {
			return fail(fmt.Errorf("side input %s of stage %s: %w", si.Local, t.stage.ID, err))
		}
		s := newSideInput(si, wv, i, t.sideDB)
		if s.window, err = sideWindowMapping(p.Components, si.PColl); err != nil {
			return fail(fmt.Errorf("stage %s: %w", t.stage.ID, err))
		}
		t.sides = append(t.sides, s)
		t.side.inputs[[2]string{si.Transform, si.Local}] = s
	}
	if err := t.park.init(t.sideDB); err != nil {
		return fail(fmt.Errorf("%s: %w", t.name(), err))
	}
	return nil
}

// stateDB is the subtask's Pebble DB (nil if it has none): its checkpoint
// covers keyed state, side inputs and parked input.
func (t *sdkTask) stateDB() *state.DB {
	if t.keyed != nil {
		return t.keyed.db
	}
	return t.sideDB
}
