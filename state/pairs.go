package state

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// A GroupBuffer can also be used window first, for windows that fire as
// the watermark passes them: Add(kg, WindowKey(maxTs, window), key, …)
// stores records as prefix | kg | component(maxTs|window) | component(key)
// | seq, so the records of every window up to a time are one range per
// key group, visited by ScanPairs and removed by DeleteBefore.

// WindowKey is the first component of a window-first record: the window's
// max timestamp (order-preserving) followed by the encoded window.
func WindowKey(maxTs int64, window []byte) []byte {
	return append(appendTimestamp(make([]byte, 0, 8+len(window)), maxTs), window...)
}

// SplitWindowKey returns the max timestamp and encoded window of a WindowKey.
func SplitWindowKey(k []byte) (int64, []byte, error) {
	if len(k) < 8 {
		return 0, nil, fmt.Errorf("state: window key of %d bytes is shorter than a timestamp", len(k))
	}
	return readTimestamp(k), k[8:], nil
}

// windowBound is the first record key, in key group kg, of windows whose
// max timestamp is after upTo.
func (g *GroupBuffer) windowBound(kg int, upTo int64) []byte {
	b := binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kg))
	if upTo == maxInt64 {
		return binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kg+1))
	}
	return AppendComponent(b, appendTimestamp(nil, upTo+1))
}

const maxInt64 = int64(^uint64(0) >> 1)

// ScanPairs flushes, then visits, in key groups [kgStart, kgEnd), every
// (first, second) component pair whose first component is a WindowKey with
// max timestamp at or before upTo, in window then key order, with its
// records in arrival order (Record.Window holds the second component). It
// streams one pair at a time; slices are valid only during fn.
func (g *GroupBuffer) ScanPairs(kgStart, kgEnd int, upTo int64, fn func(keyGroup int, first []byte, recs []Record) error) (err error) {
	if err := g.Flush(); err != nil {
		return err
	}
	for kg := kgStart; kg < kgEnd; kg++ {
		if err := g.scanPairsIn(kg, upTo, fn); err != nil {
			return err
		}
	}
	return nil
}

func (g *GroupBuffer) scanPairsIn(kg int, upTo int64, fn func(int, []byte, []Record) error) (err error) {
	iter, err := g.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kg)),
		UpperBound: g.windowBound(kg, upTo),
	})
	if err != nil {
		return g.fail("scan pairs: new iterator", err)
	}
	defer func() {
		if cerr := iter.Close(); cerr != nil && err == nil {
			err = g.fail("scan pairs: close iterator", cerr)
		}
	}()
	var s scanGroup
	for valid := iter.First(); valid; valid = iter.Next() {
		k := iter.Key()
		_, first, second, _, err := g.decodeKey(k)
		if err != nil {
			return err
		}
		pair := k[:len(k)-8]
		if !s.active || !bytes.Equal(pair, s.group) {
			if s.active {
				if err := s.emit(fn); err != nil {
					return err
				}
			}
			s.start(kg, pair, first)
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return g.fail("scan pairs: read value", err)
		}
		if len(v) < tsLength {
			return fmt.Errorf("state: group buffer scan: value of %d bytes under key %x is shorter than a timestamp", len(v), k)
		}
		s.add(second, readTimestamp(v), v[tsLength:])
	}
	if err := iter.Error(); err != nil {
		return g.fail("scan pairs: iterate", err)
	}
	if s.active {
		return s.emit(fn)
	}
	return nil
}

// DeleteBefore removes, in key groups [kgStart, kgEnd), the records of
// every window whose max timestamp is at or before upTo.
func (g *GroupBuffer) DeleteBefore(kgStart, kgEnd int, upTo int64) error {
	if err := g.Flush(); err != nil {
		return err
	}
	b := g.db.pdb.NewBatch()
	defer b.Close()
	for kg := kgStart; kg < kgEnd; kg++ {
		lo := binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kg))
		if err := b.DeleteRange(lo, g.windowBound(kg, upTo), nil); err != nil {
			return g.fail("delete fired windows", err)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return g.fail("delete fired windows", err)
	}
	return nil
}
