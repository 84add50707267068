package state

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Parked main input: elements of a stage with side inputs that may not run
// until the side input windows they read are ready. Each run of elements
// is parked under its need (the latest side window max timestamp any of
// them reads), so those whose side windows are ready are one range scan;
// a second index by the run's least element timestamp gives the hold on
// the subtask's output watermark with one seek.

func parkedKey(need int64, seq []byte) []byte {
	return append(appendTimestamp(unkeyedPrefix(spaceParked), need), seq...)
}

func parkedHoldKey(minTs int64, seq []byte) []byte {
	return append(appendTimestamp(unkeyedPrefix(spaceParkedHold), minTs), seq...)
}

// Park stores elements (a concatenation of whole encoded elements) until
// the side input windows they need are ready: until ReleaseParked is
// called with a bound after need. minTs is their least timestamp.
func (d *DB) Park(need, minTs int64, elements []byte) error {
	seq := binary.BigEndian.AppendUint64(nil, appendSeq.Add(1))
	b := d.pdb.NewBatch()
	defer b.Close()
	v := append(appendTimestamp(make([]byte, 0, 8+len(elements)), minTs), elements...)
	if err := b.Set(parkedKey(need, seq), v, nil); err != nil {
		return fmt.Errorf("state: parking input: %w", err)
	}
	if err := b.Set(parkedHoldKey(minTs, seq), nil, nil); err != nil {
		return fmt.Errorf("state: parking input: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: parking input: %w", err)
	}
	return nil
}

// ReleaseParked removes the parked runs whose need is before bound (all of
// them if bound is the maximum int64), lowest need first, and hands each
// to fn (elements is valid only during the call), stopping once fn has
// been given at least budget bytes. It reports whether runs before bound
// are left.
func (d *DB) ReleaseParked(bound int64, budget int, fn func(elements []byte) error) (more bool, err error) {
	lo := unkeyedPrefix(spaceParked)
	hi := prefixEnd(lo)
	if bound != maxInt64 {
		hi = appendTimestamp(unkeyedPrefix(spaceParked), bound)
	}
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return false, fmt.Errorf("state: releasing parked input: %w", err)
	}
	b := d.pdb.NewBatch()
	defer b.Close()
	given := 0
	for valid := it.First(); valid; valid = it.Next() {
		if given >= budget {
			more = true
			break
		}
		k := it.Key()
		v, err := it.ValueAndErr()
		if err == nil && len(v) < tsLength {
			err = fmt.Errorf("value of %d bytes under %x", len(v), k)
		}
		if err == nil {
			err = fn(v[tsLength:])
		}
		if err == nil {
			err = b.Delete(k, nil)
		}
		if err == nil {
			err = b.Delete(parkedHoldKey(readTimestamp(v), k[len(lo)+tsLength:]), nil)
		}
		if err != nil {
			it.Close()
			return false, fmt.Errorf("state: releasing parked input: %w", err)
		}
		given += len(v) - tsLength
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		return false, fmt.Errorf("state: releasing parked input: %w", err)
	}
	return more, nil
}

// ParkedBounds returns the least need and the least element timestamp of
// the parked input, and false if nothing is parked.
func (d *DB) ParkedBounds() (need, minTs int64, ok bool, err error) {
	first := func(space byte) (int64, bool, error) {
		lo := unkeyedPrefix(space)
		it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return 0, false, err
		}
		defer it.Close()
		if !it.First() {
			return 0, false, it.Error()
		}
		k := it.Key()
		if len(k) < len(lo)+tsLength {
			return 0, false, fmt.Errorf("parked key %x is too short", k)
		}
		return readTimestamp(k[len(lo):]), true, nil
	}
	if need, ok, err = first(spaceParked); err != nil || !ok {
		return 0, 0, false, wrapParked(err)
	}
	minTs, _, err = first(spaceParkedHold)
	return need, minTs, true, wrapParked(err)
}

func wrapParked(err error) error {
	if err != nil {
		return fmt.Errorf("state: reading parked input: %w", err)
	}
	return nil
}
