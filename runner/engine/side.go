package engine

import (
	"context"
	"fmt"

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

// sideState serves a bundle's side input reads (harness.SideInputs) from
// Pebble, a page at a time.
type sideState struct {
	inputs map[[2]string]*sideInput // (transform, local) → side input
}

// find returns side input side of transform.
func (h *sideState) find(transform, side string) (*sideInput, error) {
	if h != nil {
		if s := h.inputs[[2]string{transform, side}]; s != nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no side input %q of transform %q", side, transform)
}

// read reads a page of side input side of transform with op.
func (h *sideState) read(transform, side string, op func(s *sideInput) ([]byte, []byte, error)) ([]byte, []byte, error) {
	s, err := h.find(transform, side)
	if err != nil {
		return nil, nil, err
	}
	data, next, err := op(s)
	if err != nil {
		return nil, nil, fmt.Errorf("side input %s of %s: %w", side, transform, err)
	}
	return data, next, nil
}

func (h *sideState) SideIterable(transform, side string, window, token []byte, max int) ([]byte, []byte, error) {
	return h.read(transform, side, func(s *sideInput) ([]byte, []byte, error) {
		return s.db.ReadSideValues(s.id, window, token, max)
	})
}

func (h *sideState) SideMulti(transform, side string, window, key, token []byte, max int) ([]byte, []byte, error) {
	return h.read(transform, side, func(s *sideInput) ([]byte, []byte, error) {
		return s.db.ReadSideMulti(s.id, window, key, token, max)
	})
}

func (h *sideState) SideKeys(transform, side string, window, token []byte, max int) ([]byte, []byte, error) {
	return h.read(transform, side, func(s *sideInput) ([]byte, []byte, error) {
		return s.db.ReadSideKeys(s.id, window, token, max)
	})
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
		db, err := t.openState(ctx, dir, cache, true)
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
