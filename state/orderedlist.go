package state

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Ordered list user state (beam:user_state:ordered_list:v1).
//
// Wire format, as verified against the Beam Go SDK v2.77.0:
//
//   - An entry is varint(uint64(sortKey)) followed by the value in the state's
//     element coder, nested context (exec/userstate.go encodeOrderedListEntry
//     and decodeOrderedListEntry). The varint is the plain base-128 varint of
//     beam:coder:varint:v1 applied to the two's complement bits (protowire
//     AppendVarint), not zigzag: a negative sort key takes 10 bytes. That is
//     the KV<varint, value> the Fn API's StateAppendRequest describes.
//   - The Fn API says the value should be length-prefixed, but the Go SDK
//     encodes it with the element coder from the ParDo's OrderedListSpec
//     as-is, and weir does not rewrite that coder: an int64 value is a bare
//     beam:coder:varint:v1, a float64 beam:coder:double:v1, a struct
//     beam:coder:row:v1; only Go custom coders (an int is one) come as
//     beam:coder:length_prefix:v1. So entries cannot be split without the
//     value coder. The Go SDK frames them instead: encodeOrderedListEntry buffers
//     one whole entry and writes it once, and the harness's stateKeyWriter
//     sends each write as its own Append request, so every Append carries
//     exactly one entry. AppendOrdered relies on that; AppendOrderedFunc
//     splits several entries when the value coder's length is known.
//   - Get and Clear carry a StateKey.OrderedListUserState.range [start, end).
//     Get answers with the concatenated entries whose sort key is in the
//     range, in sort-key order (prism keeps ties in append order: a stable
//     sort). The SDK's Read and Clear use [MinInt64, MaxInt64) to mean
//     everything; Append carries no range.
//
// Storage: cell | sortKey (8 bytes, order-preserving) | seq (8 bytes) →
// value bytes, so a range read or clear is one range of keys.

const spaceOrdered = 'o' // ordered list user state: cell | sortKey | seq

// orderedBounds returns the key range of the entries of the cell at p with a
// sort key in [start, end). An end of math.MaxInt64 means no upper bound:
// the SDK reads and clears the whole list with [MinInt64, MaxInt64), and an
// entry at MaxInt64 could otherwise never be read or cleared.
func orderedBounds(p []byte, start, end int64) (lo, hi []byte) {
	lo = appendTimestamp(append([]byte(nil), p...), start)
	if end == math.MaxInt64 {
		return lo, prefixEnd(p)
	}
	return lo, appendTimestamp(append([]byte(nil), p...), end)
}

// ReadOrdered returns the entries of an ordered list cell whose sort key is
// in [start, end) (end math.MaxInt64: no upper bound), each encoded as
// varint(uint64(sortKey)) | value, in sort-key order, ties in append order.
func (b *Bundle) ReadOrdered(c Cell, start, end int64) ([]byte, error) {
	if start >= end && end != math.MaxInt64 {
		return nil, nil
	}
	p := c.prefix(spaceOrdered)
	lo, hi := orderedBounds(p, start, end)
	var out []byte
	err := b.scan(lo, hi, false, func(k, v []byte) error {
		if len(k) != len(p)+tsLength+8 {
			return fmt.Errorf("reading ordered list state %s: malformed key of %d bytes", c.StateID, len(k))
		}
		out = binary.AppendUvarint(out, uint64(readTimestamp(k[len(p):])))
		out = append(out, v...)
		return nil
	})
	return out, err
}

// AppendOrdered adds one entry, varint(uint64(sortKey)) | value, to an
// ordered list cell: the value is the rest of data, which is how the Go SDK
// frames its Append requests (one entry each). Empty data adds nothing.
func (b *Bundle) AppendOrdered(c Cell, data []byte) error {
	return b.AppendOrderedFunc(c, data, nil)
}

// AppendOrderedFunc adds the entries in data to an ordered list cell.
// valueLen returns the length of the encoded value at the front of its
// argument (e.g. a wire.Coder's Skip); nil means data holds one entry.
func (b *Bundle) AppendOrderedFunc(c Cell, data []byte, valueLen func([]byte) (int, error)) error {
	p := c.prefix(spaceOrdered)
	for len(data) > 0 {
		u, n := binary.Uvarint(data)
		if n <= 0 {
			return fmt.Errorf("appending to ordered list state %s: malformed sort key varint", c.StateID)
		}
		data = data[n:]
		vn := len(data)
		if valueLen != nil {
			var err error
			if vn, err = valueLen(data); err != nil {
				return fmt.Errorf("appending to ordered list state %s: reading value: %w", c.StateID, err)
			}
			if vn < 0 || vn > len(data) {
				return fmt.Errorf("appending to ordered list state %s: value length %d of %d bytes", c.StateID, vn, len(data))
			}
		}
		k, err := b.orderedKey(p, int64(u))
		if err != nil {
			return fmt.Errorf("appending to ordered list state %s: %w", c.StateID, err)
		}
		if err := b.set(k, data[:vn]); err != nil {
			return fmt.Errorf("appending to ordered list state %s: %w", c.StateID, err)
		}
		data = data[vn:]
	}
	return nil
}

// orderedKey returns a new entry's key: after every entry with the same sort
// key, including those written by an earlier process (appendSeq restarts at
// zero after a restore, so it alone would reuse their sequence numbers).
func (b *Bundle) orderedKey(p []byte, sortKey int64) ([]byte, error) {
	k := appendTimestamp(append([]byte(nil), p...), sortKey)
	seq := appendSeq.Add(1)
	if b.load != nil {
		// A load's DB held nothing: only its own entries, numbered in order.
		return binary.BigEndian.AppendUint64(k, seq), nil
	}
	it, err := b.b.NewIter(&pebble.IterOptions{LowerBound: k, UpperBound: prefixEnd(k)})
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	if it.Last() && len(it.Key()) == len(k)+8 {
		seq = max(seq, binary.BigEndian.Uint64(it.Key()[len(k):])+1)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	return binary.BigEndian.AppendUint64(k, seq), nil
}

// ClearOrdered removes the entries of an ordered list cell whose sort key is
// in [start, end); [MinInt64, MaxInt64) clears the whole cell.
func (b *Bundle) ClearOrdered(c Cell, start, end int64) error {
	if start >= end && end != math.MaxInt64 {
		return nil
	}
	lo, hi := orderedBounds(c.prefix(spaceOrdered), start, end)
	if err := b.deleteRange(lo, hi, false); err != nil {
		return fmt.Errorf("clearing ordered list state %s: %w", c.StateID, err)
	}
	return nil
}
