package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Side inputs and parked main input live in the DB of the subtask that
// reads them. They belong to the subtask, not to a key, so their keys start
// with the reserved key group unkeyed (above MaxKeyGroups: no key-group
// range scan of keyed state ever meets them), then one of these bytes:
//
//	'v' iterable side input: side | window | seq → values (a run of them)
//	'w' multimap side input: side | window | key | seq → values of key
//	'k' multimap keys:       side | window | key → key
//	'p' parked main input:   need | seq → minTs | elements
//	'q' parked hold index:   minTs | seq → (empty)
//	'S' sequence mark:       (no more) → appendSeq when the DB was checkpointed
//
// side is the side input's index in its stage (2 bytes, big endian);
// window and key are components (AppendComponent); need, minTs and seq
// are order-preserving 8-byte numbers. Values are appended in arrival
// order, so a window's values (or a key's) are one range in that order.
const (
	unkeyed         = 0xFFFF
	spaceSideValues = 'v'
	spaceSideMulti  = 'w'
	spaceSideKeys   = 'k'
	spaceParked     = 'p'
	spaceParkedHold = 'q'
	spaceSeqMark    = 'S'
)

func unkeyedPrefix(space byte) []byte {
	return append(binary.BigEndian.AppendUint16(make([]byte, 0, 32), unkeyed), space)
}

func sidePrefix(space byte, side int, window []byte) []byte {
	b := binary.BigEndian.AppendUint16(unkeyedPrefix(space), uint16(side))
	return AppendComponent(b, window)
}

// SideBatch collects side input writes; Commit applies them together.
type SideBatch struct {
	b *pebble.Batch
}

// NewSideBatch starts a batch of side input writes.
func (d *DB) NewSideBatch() *SideBatch { return &SideBatch{b: d.pdb.NewBatch()} }

// AddValues appends encoded values to window of iterable side input side.
func (b *SideBatch) AddValues(side int, window, values []byte) error {
	if err := b.b.Set(seqSuffix(sidePrefix(spaceSideValues, side, window)), values, nil); err != nil {
		return fmt.Errorf("state: adding to side input %d: %w", side, err)
	}
	return nil
}

// AddMulti appends encoded values under key to window of multimap side
// input side, and records key among the window's keys.
func (b *SideBatch) AddMulti(side int, window, key, values []byte) error {
	k := AppendComponent(sidePrefix(spaceSideMulti, side, window), key)
	if err := b.b.Set(seqSuffix(k), values, nil); err != nil {
		return fmt.Errorf("state: adding to side input %d: %w", side, err)
	}
	if err := b.b.Set(AppendComponent(sidePrefix(spaceSideKeys, side, window), key), key, nil); err != nil {
		return fmt.Errorf("state: adding a key of side input %d: %w", side, err)
	}
	return nil
}

// Commit applies the batch (durable at the next checkpoint: the WAL is off).
func (b *SideBatch) Commit() error {
	defer b.b.Close()
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("state: committing side input: %w", err)
	}
	return nil
}

// Discard drops the batch.
func (b *SideBatch) Discard() { b.b.Close() }

// ErrBadToken is wrapped by the errors of side input reads given a
// continuation token they did not issue.
var ErrBadToken = errors.New("state: bad continuation token")

// ReadSideValues returns up to max bytes of the values of window of
// iterable side input side, from where token (nil: the start) says, and
// the token of the rest (nil when nothing is left).
func (d *DB) ReadSideValues(side int, window, token []byte, max int) ([]byte, []byte, error) {
	return d.readRun(sidePrefix(spaceSideValues, side, window), token, max)
}

// ReadSideMulti is ReadSideValues for the values of one key of window of
// multimap side input side.
func (d *DB) ReadSideMulti(side int, window, key, token []byte, max int) ([]byte, []byte, error) {
	return d.readRun(AppendComponent(sidePrefix(spaceSideMulti, side, window), key), token, max)
}

// ReadSideKeys is ReadSideValues for the distinct keys (concatenated, in
// key order) of window of multimap side input side.
func (d *DB) ReadSideKeys(side int, window, token []byte, max int) ([]byte, []byte, error) {
	return d.readRun(sidePrefix(spaceSideKeys, side, window), token, max)
}

// readRun reads the concatenated values of the keys starting with prefix,
// at most max bytes of them, from the position token names. A token is the
// 8-byte offset into a value followed by that value's key, so a read costs
// one seek and what it returns, however long the run.
func (d *DB) readRun(prefix, token []byte, max int) (data, next []byte, err error) {
	if max <= 0 {
		return nil, nil, fmt.Errorf("state: side input read of %d bytes", max)
	}
	start, off := prefix, uint64(0)
	if len(token) > 0 {
		if len(token) < 8 || !bytes.HasPrefix(token[8:], prefix) {
			return nil, nil, fmt.Errorf("%w %x", ErrBadToken, token)
		}
		off, start = binary.BigEndian.Uint64(token), token[8:]
	}
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, nil, fmt.Errorf("state: reading side input: %w", err)
	}
	defer func() {
		if cerr := it.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("state: reading side input: %w", cerr)
		}
	}()
	valid := it.SeekGE(start)
	if len(token) > 0 && (!valid || !bytes.Equal(it.Key(), start)) {
		return nil, nil, fmt.Errorf("%w: its value is gone", ErrBadToken)
	}
	for ; valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, nil, fmt.Errorf("state: reading side input: %w", err)
		}
		if off > uint64(len(v)) {
			return nil, nil, fmt.Errorf("%w: offset %d in a value of %d bytes", ErrBadToken, off, len(v))
		}
		v = v[off:]
		if room := max - len(data); len(v) > room {
			data = append(data, v[:room]...)
			next = binary.BigEndian.AppendUint64(nil, off+uint64(room))
			return data, append(next, it.Key()...), nil
		}
		data = append(data, v...)
		off = 0
		if len(data) == max {
			if it.Next() {
				next = binary.BigEndian.AppendUint64(nil, 0)
				return data, append(next, it.Key()...), nil
			}
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, nil, fmt.Errorf("state: reading side input: %w", err)
	}
	return data, nil, nil
}
