package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Clipping. A DB restored from the files of another subtask's DB (a native
// savepoint's, restored at a higher parallelism) holds the state of more
// key groups than its subtask owns, and parked main input that only one of
// the subtasks that share those files may take. Clip removes what is not
// the subtask's: Pebble excises the ranges, so sstables that straddle them
// become virtual tables over the same files, and nothing is rewritten or
// read but their bounds.

// Clip removes from d the keyed state outside key groups [lo, hi) of
// [0, keyGroups), under each of prefixes (nil or empty: the key-group-first
// layout of user state and timers; a GroupBuffer's prefix), and its parked
// main input unless keepParked. Side inputs, a GroupBuffer's sequence
// counter and the sequence mark stay. It refuses prefixes whose ranges
// would meet another prefix's keys.
func (d *DB) Clip(ctx context.Context, lo, hi, keyGroups int, prefixes [][]byte, keepParked bool) error {
	if lo < 0 || lo >= hi || hi > keyGroups || keyGroups > MaxKeyGroups {
		return fmt.Errorf("state: clip %s to key groups [%d, %d) of %d: not a range of them", d.dir, lo, hi, keyGroups)
	}
	spans, err := clipSpans(lo, hi, keyGroups, prefixes)
	if err != nil {
		return fmt.Errorf("state: clip %s: %w", d.dir, err)
	}
	if !keepParked {
		spans = append(spans, pebble.KeyRange{Start: unkeyedPrefix(spaceParked), End: prefixEnd(unkeyedPrefix(spaceParkedHold))})
	}
	for _, s := range spans {
		if err := d.pdb.Excise(ctx, s); err != nil {
			return fmt.Errorf("state: clip %s: excising [%x, %x): %w", d.dir, s.Start, s.End, err)
		}
	}
	return nil
}

// clipSpans are the key ranges outside key groups [lo, hi) under each
// prefix.
func clipSpans(lo, hi, keyGroups int, prefixes [][]byte) ([]pebble.KeyRange, error) {
	if len(prefixes) == 0 {
		prefixes = [][]byte{nil}
	}
	kgKey := func(p []byte, kg int) []byte {
		return binary.BigEndian.AppendUint16(append([]byte(nil), p...), uint16(kg))
	}
	var spans []pebble.KeyRange
	for _, p := range prefixes {
		for _, r := range [][2]int{{0, lo}, {hi, keyGroups}} {
			if r[0] == r[1] {
				continue
			}
			s := pebble.KeyRange{Start: kgKey(p, r[0]), End: kgKey(p, r[1])}
			for _, q := range prefixes {
				if len(q) > 0 && !bytes.Equal(p, q) && bytes.Compare(q, s.End) < 0 && bytes.Compare(prefixEnd(q), s.Start) > 0 {
					return nil, fmt.Errorf("key groups [%d, %d) under prefix %x meet the keys under prefix %x", r[0], r[1], p, q)
				}
			}
			spans = append(spans, s)
		}
	}
	return spans, nil
}
