package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
)

// autoFlushBytes is the pending batch size at which Add commits it.
const autoFlushBytes = 4 << 20

// shrinkArenaBytes: after a key whose records needed more scratch memory than
// this, ScanKeys drops the scratch buffer so one hot key does not pin it.
const shrinkArenaBytes = 64 << 20

// GroupBuffer buffers a GroupByKey's input on disk until its windows fire.
//
// Pebble keys: prefix | keyGroup (2 bytes BE) | component(key) |
// component(window) | seq (8 bytes BE); values: timestamp (8 bytes BE, sign
// bit flipped) | value bytes. seq is a per-buffer counter, so records with
// equal (key, window) are all kept, in arrival order. The next seq is stored
// under prefix | FF FF (outside every key group) with each commit, so a buffer
// reopened from a checkpoint continues the sequence instead of overwriting.
//
// The prefixes of the buffers of one DB must be prefix-free (no prefix a
// prefix of another), e.g. of fixed length, and there must be at most one
// GroupBuffer per prefix at a time (each holds the sequence counter). A
// GroupBuffer is not safe for concurrent use.
type GroupBuffer struct {
	db        *DB
	prefix    []byte
	metaKey   []byte
	batch     *pebble.Batch
	arena     []byte      // keys and values of pending records
	pending   []pendingKV // offsets into arena, sorted by key at Flush
	seq       uint64      // next seq to assign
	seqLoaded bool
	seqStored uint64 // seq value last written to metaKey
}

// pendingKV locates one pending record in the arena. Records are sorted
// before they enter the batch, so the memtable sees ascending keys: its
// skiplist inserts then stay near the previous one.
type pendingKV struct{ k0, k1, v1 int }

// Record is one buffered element of a key, as visited by ScanKeys.
type Record struct {
	Window    []byte
	Timestamp int64
	Value     []byte
}

// GroupBuffer returns the buffer stored under prefix (which is copied).
func (d *DB) GroupBuffer(prefix []byte) *GroupBuffer {
	p := bytes.Clone(prefix)
	if p == nil {
		p = []byte{}
	}
	return &GroupBuffer{
		db:      d,
		prefix:  p,
		metaKey: append(bytes.Clone(p), 0xFF, 0xFF),
	}
}

// Add buffers one record. It appends to a pending batch, committed by Flush,
// by ScanKeys, or by Add itself once the batch passes ~4 MiB.
func (g *GroupBuffer) Add(keyGroup int, key, window []byte, timestamp int64, value []byte) error {
	if err := g.db.Err(); err != nil {
		return fmt.Errorf("state: group buffer add: %w", err)
	}
	if keyGroup < 0 || keyGroup >= MaxKeyGroups {
		return fmt.Errorf("state: group buffer add: key group %d out of range [0,%d)", keyGroup, MaxKeyGroups)
	}
	if !g.seqLoaded {
		if err := g.loadSeq(); err != nil {
			return err
		}
	}
	k0 := len(g.arena)
	a := append(g.arena, g.prefix...)
	a = binary.BigEndian.AppendUint16(a, uint16(keyGroup))
	a = AppendComponent(a, key)
	a = AppendComponent(a, window)
	a = binary.BigEndian.AppendUint64(a, g.seq)
	k1 := len(a)
	a = appendTimestamp(a, timestamp)
	a = append(a, value...)
	g.arena = a
	g.pending = append(g.pending, pendingKV{k0, k1, len(a)})
	g.seq++
	if len(g.arena) >= autoFlushBytes {
		return g.Flush()
	}
	return nil
}

// fillBatch moves the pending records into the batch in key order.
func (g *GroupBuffer) fillBatch() error {
	if len(g.pending) == 0 {
		return nil
	}
	if g.batch == nil {
		g.batch = g.db.pdb.NewBatch()
	}
	a := g.arena
	sort.Slice(g.pending, func(i, j int) bool {
		pi, pj := g.pending[i], g.pending[j]
		return bytes.Compare(a[pi.k0:pi.k1], a[pj.k0:pj.k1]) < 0
	})
	for _, p := range g.pending {
		if err := g.batch.Set(a[p.k0:p.k1], a[p.k1:p.v1], nil); err != nil {
			return fmt.Errorf("state: group buffer add: batch set: %w", err)
		}
	}
	g.pending = g.pending[:0]
	g.arena = g.arena[:0]
	return nil
}

func (g *GroupBuffer) loadSeq() error {
	v, closer, err := g.db.pdb.Get(g.metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		g.seq = 0
	case err != nil:
		return g.fail("read sequence counter", err)
	default:
		if len(v) != 8 {
			closer.Close()
			return fmt.Errorf("state: group buffer: sequence counter has %d bytes, want 8", len(v))
		}
		g.seq = binary.BigEndian.Uint64(v)
		if err := closer.Close(); err != nil {
			return g.fail("read sequence counter", err)
		}
	}
	g.seqStored = g.seq
	g.seqLoaded = true
	return nil
}

// Flush commits the pending batch (without sync: durability comes from
// checkpoints, which flush the memtable first).
func (g *GroupBuffer) Flush() error {
	if err := g.db.Err(); err != nil {
		return fmt.Errorf("state: group buffer flush: %w", err)
	}
	if err := g.fillBatch(); err != nil {
		return err
	}
	if g.batch == nil || (g.batch.Empty() && g.seq == g.seqStored) {
		return nil
	}
	if g.seq != g.seqStored {
		if err := g.batch.Set(g.metaKey, binary.BigEndian.AppendUint64(nil, g.seq), nil); err != nil {
			return fmt.Errorf("state: group buffer flush: write sequence counter: %w", err)
		}
	}
	if err := g.batch.Commit(pebble.NoSync); err != nil {
		return g.fail("flush: commit batch", err)
	}
	g.batch.Reset()
	g.seqStored = g.seq
	// A commit error may have been reported to the logger instead.
	if err := g.db.Err(); err != nil {
		return fmt.Errorf("state: group buffer flush: %w", err)
	}
	return nil
}

// Clear deletes everything in the buffer, including records not yet flushed.
func (g *GroupBuffer) Clear() error {
	if err := g.db.Err(); err != nil {
		return fmt.Errorf("state: group buffer clear: %w", err)
	}
	if g.batch != nil {
		g.batch.Reset()
	}
	g.pending, g.arena = g.pending[:0], g.arena[:0]
	// Everything the buffer owns lies in [prefix|00 00, metaKey|00).
	start := append(bytes.Clone(g.prefix), 0, 0)
	end := append(bytes.Clone(g.metaKey), 0)
	if err := g.db.pdb.DeleteRange(start, end, pebble.NoSync); err != nil {
		return g.fail("clear: delete range", err)
	}
	// The counter is gone from disk; keep counting from where we are.
	g.seqStored = 0
	if !g.seqLoaded {
		g.seq, g.seqLoaded = 0, true
	}
	return nil
}

// ScanKeys flushes, then visits every key whose key group is in
// [kgStart, kgEnd), in key-group then key order, with all of that key's records
// ordered by window then arrival. It streams: only one key's records are in
// memory at a time. key, recs and the slices in them are only valid during the
// callback; copy what must outlive it. Records added during the scan are not
// visited. An error from fn stops the scan and is returned unchanged.
func (g *GroupBuffer) ScanKeys(kgStart, kgEnd int, fn func(keyGroup int, key []byte, recs []Record) error) (err error) {
	if kgStart < 0 || kgEnd > MaxKeyGroups || kgStart > kgEnd {
		return fmt.Errorf("state: group buffer scan: bad key-group range [%d,%d)", kgStart, kgEnd)
	}
	if err := g.Flush(); err != nil {
		return err
	}
	if kgStart == kgEnd {
		return nil
	}
	iter, err := g.db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kgStart)),
		UpperBound: binary.BigEndian.AppendUint16(bytes.Clone(g.prefix), uint16(kgEnd)),
	})
	if err != nil {
		return g.fail("scan: new iterator", err)
	}
	defer func() {
		if cerr := iter.Close(); cerr != nil && err == nil {
			err = g.fail("scan: close iterator", cerr)
		}
	}()

	var s scanGroup
	for valid := iter.First(); valid; valid = iter.Next() {
		k := iter.Key()
		kg, key, win, groupLen, err := g.decodeKey(k)
		if err != nil {
			return err
		}
		if !s.active || !bytes.Equal(k[:groupLen], s.group) {
			if s.active {
				if err := s.emit(fn); err != nil {
					return err
				}
			}
			s.start(kg, k[:groupLen], key)
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return g.fail("scan: read value", err)
		}
		if len(v) < tsLength {
			return fmt.Errorf("state: group buffer scan: value of %d bytes under key %x is shorter than a timestamp", len(v), k)
		}
		s.add(win, readTimestamp(v), v[tsLength:])
	}
	if err := iter.Error(); err != nil {
		return g.fail("scan: iterate", err)
	}
	if s.active {
		if err := s.emit(fn); err != nil {
			return err
		}
	}
	// Invariant violations are reported to the logger, not the iterator.
	if err := g.db.Err(); err != nil {
		return fmt.Errorf("state: group buffer scan: %w", err)
	}
	return nil
}

// decodeKey splits a buffer key; groupLen is the length of the
// prefix | keyGroup | component(key) part that identifies the key.
func (g *GroupBuffer) decodeKey(k []byte) (kg int, key, win []byte, groupLen int, err error) {
	rest := k[len(g.prefix):]
	if len(rest) < 2 {
		return 0, nil, nil, 0, fmt.Errorf("state: group buffer scan: key %x too short", k)
	}
	kg = int(binary.BigEndian.Uint16(rest))
	key, rest, err = ReadComponent(rest[2:])
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("state: group buffer scan: decode key of %x: %w", k, err)
	}
	groupLen = len(k) - len(rest)
	win, rest, err = ReadComponent(rest)
	if err != nil {
		return 0, nil, nil, 0, fmt.Errorf("state: group buffer scan: decode window of %x: %w", k, err)
	}
	if len(rest) != 8 {
		return 0, nil, nil, 0, fmt.Errorf("state: group buffer scan: key %x has %d trailing bytes, want an 8-byte seq", k, len(rest))
	}
	return kg, key, win, groupLen, nil
}

// scanGroup accumulates the records of the current key. Pebble's key and value
// slices are only valid until the iterator moves, so the bytes are copied into
// one reused arena; records hold offsets until the arena stops growing.
type scanGroup struct {
	active bool
	kg     int
	group  []byte // encoded prefix|kg|component(key) of the current key
	key    []byte // decoded key
	arena  []byte
	offs   []recOffsets
	recs   []Record
}

type recOffsets struct {
	win, val, end int
	ts            int64
}

func (s *scanGroup) start(kg int, group, key []byte) {
	s.active = true
	s.kg = kg
	s.group = append(s.group[:0], group...)
	s.key = append(s.key[:0], key...)
	s.arena = s.arena[:0]
	s.offs = s.offs[:0]
}

func (s *scanGroup) add(win []byte, ts int64, val []byte) {
	o := recOffsets{win: len(s.arena), ts: ts}
	s.arena = append(s.arena, win...)
	o.val = len(s.arena)
	s.arena = append(s.arena, val...)
	o.end = len(s.arena)
	s.offs = append(s.offs, o)
}

func (s *scanGroup) emit(fn func(int, []byte, []Record) error) error {
	s.recs = s.recs[:0]
	for _, o := range s.offs {
		s.recs = append(s.recs, Record{
			Window:    s.arena[o.win:o.val:o.val],
			Timestamp: o.ts,
			Value:     s.arena[o.val:o.end:o.end],
		})
	}
	err := fn(s.kg, s.key[:len(s.key):len(s.key)], s.recs)
	clear(s.recs) // drop references into the arena
	if cap(s.arena) > shrinkArenaBytes {
		s.arena, s.offs, s.recs = nil, nil, nil
	}
	s.active = false
	return err
}

// fail wraps err, naming the operation, and also wraps the DB's failure (a
// fatal error or corruption Pebble reported to the logger) if there is one, so
// callers can test errors.Is(err, ErrDBFailed).
func (g *GroupBuffer) fail(what string, err error) error {
	if dbErr := g.db.Err(); dbErr != nil && !errors.Is(err, dbErr) {
		return fmt.Errorf("state: group buffer %s: %w (%w)", what, err, dbErr)
	}
	return fmt.Errorf("state: group buffer %s: %w", what, err)
}
