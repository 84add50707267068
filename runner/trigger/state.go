package trigger

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// State is the persisted state of one trigger for one (key, window). The
// zero State is the state of a window that has seen nothing yet. It holds
// one small cell per part of the trigger, so a Default trigger's state
// encodes in 3 bytes and typical composite triggers in a dozen or so.
type State struct {
	cells []cell
}

// cell is the state of one node of the trigger.
type cell struct {
	flags uint8
	// v is the node's number: elements counted (ElementCount, Always), or
	// the processing time the trigger waits to pass (AfterProcessingTime,
	// when fTimeSet).
	v int64
}

const (
	// fFinished: the node has finished and will not fire again until an
	// enclosing Repeat (or the implicit repeat of early and late firings)
	// resets it. Set on the root, the window is closed.
	fFinished uint8 = 1 << iota
	// fTimeSet: an AfterProcessingTime node has seen its first element; v
	// is the processing time it fires after.
	fTimeSet
	// fLate: an AfterEndOfWindow node has fired its on-time pane and runs
	// its late firings (Beam's "early trigger finished" bit).
	fLate
	// fOpen: set on the root with fFinished when the firing that finished
	// the trigger was a processing-time one: the window is not closed (see
	// State.Closed).
	fOpen

	knownFlags = fFinished | fTimeSet | fLate | fOpen
	// fValue marks, in the encoding only, that a varint v follows.
	fValue uint8 = 1 << 7
)

// ErrStateMismatch is returned by Check for a State that belongs to a
// different trigger.
var ErrStateMismatch = errors.New("trigger state does not match the trigger")

// stateVersion is the first byte of every encoded State.
const stateVersion = 1

// Finished reports whether the trigger has finished: it fires no pane
// again. Whether the window still takes elements is Closed's question.
func (s *State) Finished() bool {
	return s != nil && len(s.cells) > 0 && s.cells[0].flags&fFinished != 0
}

// Closed reports whether the window is closed: the trigger has finished,
// and new elements for the window are to be dropped. A trigger finished by
// a processing-time firing leaves its window open: Finished but not
// Closed. The window then keeps the elements that still arrive, and they
// come out in one pane when the watermark passes the end of the window (or
// at expiry, if they arrive later); see the package documentation.
func (s *State) Closed() bool {
	return s.Finished() && s.cells[0].flags&fOpen == 0
}

// Encode returns the State's canonical encoding: a version byte, the number
// of cells, then per cell a flags byte and, if the cell's number is not
// zero, the number as a zig-zag varint.
func (s *State) Encode() []byte {
	var cells []cell
	if s != nil {
		cells = s.cells
	}
	b := make([]byte, 0, 2+2*len(cells))
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(len(cells)))
	for _, c := range cells {
		if c.v == 0 {
			b = append(b, c.flags)
			continue
		}
		b = append(b, c.flags|fValue)
		b = binary.AppendVarint(b, c.v)
	}
	return b
}

// Decode parses an encoding made by Encode. Anything else is an error:
// Decode never panics, and whatever it accepts re-encodes to the same bytes.
// Whether the State fits a particular trigger is Machine.Check's question.
func Decode(b []byte) (*State, error) {
	if len(b) == 0 {
		return nil, errors.New("trigger state: empty")
	}
	if b[0] != stateVersion {
		return nil, fmt.Errorf("trigger state: unknown version %d", b[0])
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) {
		return nil, errors.New("trigger state: bad cell count")
	}
	b = b[k:]
	// Every cell takes at least one byte.
	if n > maxNodes || n > uint64(len(b)) {
		return nil, fmt.Errorf("trigger state: %d cells in %d bytes", n, len(b))
	}
	s := &State{}
	if n > 0 {
		s.cells = make([]cell, n)
	}
	for i := range s.cells {
		if len(b) == 0 {
			return nil, fmt.Errorf("trigger state: truncated at cell %d", i)
		}
		f := b[0]
		b = b[1:]
		if f&^(knownFlags|fValue) != 0 {
			return nil, fmt.Errorf("trigger state: cell %d has unknown flags %#x", i, f)
		}
		c := cell{flags: f &^ fValue}
		if f&fValue != 0 {
			v, k := binary.Varint(b)
			if k <= 0 {
				return nil, fmt.Errorf("trigger state: cell %d: bad number", i)
			}
			if v == 0 || k != len(binary.AppendVarint(nil, v)) {
				return nil, fmt.Errorf("trigger state: cell %d: non-canonical number", i)
			}
			c.v = v
			b = b[k:]
		}
		s.cells[i] = c
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("trigger state: %d trailing bytes", len(b))
	}
	return s, nil
}

// Check reports whether s can be the state of m's trigger: the zero State,
// or one with a cell per part of the trigger holding only what that part
// keeps. A runner that decodes persisted states calls it before OnEvent,
// which panics on a State of another shape.
func (m *Machine) Check(s *State) error {
	if s == nil || len(s.cells) == 0 {
		return nil
	}
	if len(s.cells) != len(m.nodes) {
		return fmt.Errorf("%w: %d cells for %d trigger parts of %s", ErrStateMismatch, len(s.cells), len(m.nodes), m)
	}
	for i, c := range s.cells {
		n := &m.nodes[i]
		bad := ""
		switch {
		case c.flags&fTimeSet != 0 && n.kind != kProcessingTime:
			bad = "a processing time"
		case c.flags&fLate != 0 && n.kind != kEndOfWindow:
			bad = "a late phase"
		case c.flags&fOpen != 0 && (i != 0 || c.flags&fFinished == 0):
			bad = "an open window on an unfinished or inner part"
		case c.v != 0 && n.kind == kProcessingTime && c.flags&fTimeSet == 0:
			bad = "a stray time"
		case c.v < 0 && (n.kind == kElementCount || n.kind == kAlways):
			bad = "a negative count"
		case c.v != 0 && n.kind != kProcessingTime && n.kind != kElementCount && n.kind != kAlways:
			bad = "a number"
		}
		if bad != "" {
			return fmt.Errorf("%w: cell %d holds %s for %s", ErrStateMismatch, i, bad, n.name)
		}
	}
	return nil
}
