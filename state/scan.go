package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Read-only walks over a DB's key spaces, for code that moves state in or
// out of weir's layout (state/portable: savepoints). They read the DB as
// committed, in key order; the slices they hand out are valid only during
// the callback.

// UserStateKind is the key space a piece of user state is stored in.
type UserStateKind byte

// The kinds of stored user state.
const (
	// BagState: bags, and value and combining state (a bag written as a
	// clear and an append). Cell | append slot.
	BagState UserStateKind = spaceBag
	// MapState: multimaps (map and set state). Cell | map key | append slot.
	MapState UserStateKind = spaceMap
	// OrderedState: ordered lists. Cell | sort key | sequence.
	OrderedState UserStateKind = spaceOrdered
)

func (k UserStateKind) String() string {
	switch k {
	case BagState:
		return "bag"
	case MapState:
		return "multimap"
	case OrderedState:
		return "ordered list"
	}
	return fmt.Sprintf("user state kind %q", byte(k))
}

// UserStateEntry is one stored entry of user state: what one append wrote.
type UserStateEntry struct {
	Kind    UserStateKind
	Cell    Cell
	MapKey  []byte // MapState
	SortKey int64  // OrderedState
	Value   []byte // for an ordered list, the value without its sort key
}

// ScanUserState visits the user state of key group kg: multimaps, then
// ordered lists, then bags, each by cell (transform, state ID, window,
// key), a multimap's entries by map key then append order, an ordered
// list's by sort key then append order, a bag's in append order (the
// concatenation of a cell's values is what ReadBag returns).
func (d *DB) ScanUserState(kg int, fn func(UserStateEntry) error) error {
	if kg < 0 || kg >= MaxKeyGroups {
		return fmt.Errorf("state: scanning user state: key group %d outside [0, %d)", kg, MaxKeyGroups)
	}
	for _, kind := range []UserStateKind{MapState, OrderedState, BagState} {
		lo := append(binary.BigEndian.AppendUint16(nil, uint16(kg)), byte(kind))
		err := d.scanRange(lo, prefixEnd(lo), func(k, v []byte) error {
			e, err := decodeUserState(kind, kg, k[len(lo):])
			if err != nil {
				return fmt.Errorf("state: scanning %s state of key group %d: key %x: %w", kind, kg, k, err)
			}
			e.Value = v
			return fn(e)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeUserState(kind UserStateKind, kg int, rest []byte) (UserStateEntry, error) {
	e := UserStateEntry{Kind: kind, Cell: Cell{KeyGroup: kg}}
	var parts [4][]byte
	for i := range parts {
		var err error
		if parts[i], rest, err = ReadComponent(rest); err != nil {
			return e, err
		}
	}
	e.Cell.Transform, e.Cell.StateID, e.Cell.Window, e.Cell.Key = string(parts[0]), string(parts[1]), parts[2], parts[3]
	switch kind {
	case MapState:
		var err error
		if e.MapKey, rest, err = ReadComponent(rest); err != nil {
			return e, err
		}
	case OrderedState:
		if len(rest) != tsLength+8 {
			return e, fmt.Errorf("ordered list entry with %d bytes after its cell, want %d", len(rest), tsLength+8)
		}
		e.SortKey = readTimestamp(rest)
		rest = rest[tsLength:]
	}
	if len(rest) != 8 {
		return e, fmt.Errorf("%d bytes after the cell, want an 8-byte append slot", len(rest))
	}
	return e, nil
}

// ScanTimers visits the timers of key group kg that have a lookup entry
// (every timer set with SetTimer or PutTimer; not the fixed timers of
// PutFixedTimer, which have only their index entry), by domain, then
// transform, family, key, window and tag, each with its fire time, hold
// and encoded form (from its index entry). It reads the key group's index
// entries first, in one scan, rather than looking each timer's up (a
// point lookup per timer was most of a savepoint's export).
func (d *DB) ScanTimers(kg int, fn func(Timer) error) error {
	if kg < 0 || kg >= MaxKeyGroups {
		return fmt.Errorf("state: scanning timers: key group %d outside [0, %d)", kg, MaxKeyGroups)
	}
	// The index entries by domain | fire time | ID suffix.
	index := map[string][]byte{}
	ilo := append(binary.BigEndian.AppendUint16(nil, uint16(kg)), spaceTimer)
	err := d.scanRange(ilo, prefixEnd(ilo), func(k, v []byte) error {
		index[string(k[len(ilo):])] = bytes.Clone(v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: scanning timers of key group %d: %w", kg, err)
	}
	lo := append(binary.BigEndian.AppendUint16(nil, uint16(kg)), spaceTimerRev)
	var ik []byte
	return d.scanRange(lo, prefixEnd(lo), func(k, v []byte) error {
		t, err := decodeTimerLookup(kg, k[len(lo):], v)
		if err == nil {
			rest := k[len(lo):] // domain | suffix
			ik = append(appendTimestamp(append(ik[:0], rest[0]), t.Fire), rest[1:]...)
			var ok bool
			if t.Encoded, ok = index[string(ik)]; !ok {
				err = errors.New("timer lookup entry without its index entry")
			}
		}
		if err != nil {
			return fmt.Errorf("state: scanning timers of key group %d: key %x: %w", kg, k, err)
		}
		return fn(t)
	})
}

func decodeTimerLookup(kg int, rest, v []byte) (Timer, error) {
	if len(rest) < 1 {
		return Timer{}, errors.New("no time domain")
	}
	t := Timer{TimerID: TimerID{KeyGroup: kg, Domain: int(rest[0])}}
	rest = rest[1:]
	var parts [5][]byte
	for i := range parts {
		var err error
		if parts[i], rest, err = ReadComponent(rest); err != nil {
			return t, err
		}
	}
	if len(rest) != 0 {
		return t, fmt.Errorf("%d bytes after the tag", len(rest))
	}
	t.Transform, t.Family = string(parts[0]), string(parts[1])
	t.Key, t.Window, t.Tag = parts[2], parts[3], parts[4]
	if len(v) < tsLength {
		return t, fmt.Errorf("lookup value of %d bytes", len(v))
	}
	t.Fire, t.Hold = readTimestamp(v), readTimestamp(v)
	if len(v) >= 2*tsLength {
		t.Hold = readTimestamp(v[tsLength:])
	}
	return t, nil
}

// SideRun is one run of side input values, as one AddValues (Key nil) or
// AddMulti call stored it.
type SideRun struct {
	Side     int
	Multimap bool
	Window   []byte
	Key      []byte // Multimap
	Values   []byte
}

// ScanSideInputs visits the stored runs of side input values: iterable
// ones, then multimap ones, each by side input, window (and key), then in
// the order they were added. The index of multimap keys is not visited:
// AddMulti rebuilds it.
func (d *DB) ScanSideInputs(fn func(SideRun) error) error {
	for _, space := range []byte{spaceSideValues, spaceSideMulti} {
		lo := unkeyedPrefix(space)
		err := d.scanRange(lo, prefixEnd(lo), func(k, v []byte) error {
			r, err := decodeSideRun(space, k[len(lo):])
			if err != nil {
				return fmt.Errorf("state: scanning side inputs: key %x: %w", k, err)
			}
			r.Values = v
			return fn(r)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeSideRun(space byte, rest []byte) (SideRun, error) {
	r := SideRun{Multimap: space == spaceSideMulti}
	if len(rest) < 2 {
		return r, errors.New("no side input index")
	}
	r.Side = int(binary.BigEndian.Uint16(rest))
	var err error
	if r.Window, rest, err = ReadComponent(rest[2:]); err != nil {
		return r, err
	}
	if r.Multimap {
		if r.Key, rest, err = ReadComponent(rest); err != nil {
			return r, err
		}
	}
	if len(rest) != 8 {
		return r, fmt.Errorf("%d bytes after the window or key, want an 8-byte sequence", len(rest))
	}
	return r, nil
}

// ScanParked visits the parked runs of main input (Park), by need then in
// the order they were parked.
func (d *DB) ScanParked(fn func(need, minTs int64, elements []byte) error) error {
	lo := unkeyedPrefix(spaceParked)
	return d.scanRange(lo, prefixEnd(lo), func(k, v []byte) error {
		if len(k) != len(lo)+tsLength+8 || len(v) < tsLength {
			return fmt.Errorf("state: scanning parked input: malformed entry %x of %d bytes", k, len(v))
		}
		return fn(readTimestamp(k[len(lo):]), readTimestamp(v), v[tsLength:])
	})
}

// scanRange visits the committed keys in [lo, hi).
func (d *DB) scanRange(lo, hi []byte, fn func(k, v []byte) error) (err error) {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("state: reading %s: %w", d.dir, err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: reading %s: %w", d.dir, cerr)
		}
	}()
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("state: reading %s: %w", d.dir, err)
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("state: reading %s: %w", d.dir, err)
	}
	return nil
}
