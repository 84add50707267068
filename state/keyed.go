package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Key spaces inside a subtask's DB. Every key starts with its key group
// (2 bytes, big endian), then one of these bytes.
const (
	spaceBag       = 'u' // bag user state: cell | seq
	spaceMap       = 'm' // multimap user state: cell | mapKey | seq
	spaceTimer     = 't' // timer index: fireTime | transform | family | key | window | tag
	spaceTimerRev  = 'T' // timer lookup: transform | family | key | window | tag → fireTime | holdTime
	spaceTimerHold = 'h' // timer holds: holdTime | transform | family | key | window | tag | domain
)

// Cell names one piece of user state: a state ID of a transform, for one
// key in one window.
type Cell struct {
	KeyGroup  int
	Transform string
	StateID   string
	Window    []byte
	Key       []byte
}

func (c Cell) prefix(space byte) []byte {
	return c.appendPrefix(make([]byte, 0, 16+len(c.Transform)+len(c.StateID)+len(c.Window)+len(c.Key)), space)
}

func (c Cell) appendPrefix(b []byte, space byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(c.KeyGroup))
	b = append(b, space)
	b = AppendComponent(b, []byte(c.Transform))
	b = AppendComponent(b, []byte(c.StateID))
	b = AppendComponent(b, c.Window)
	return AppendComponent(b, c.Key)
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Bundle is one bundle's view of a subtask's keyed state: reads see the
// bundle's own writes, and nothing is visible to others until Commit. A
// failed bundle is discarded, so a retry never double-counts.
type Bundle struct {
	db *DB
	b  *pebble.Batch
	it *pebble.Iterator // reused by every read: building one costs more than the read
	// last is the keys the last whole scan found, while the batch is
	// unchanged: a value-state write clears the cell it has just read, and
	// the clear need not seek again.
	last  lastScan
	sized bool // from NewBundleSized
	// emptied are the bag and multimap-value prefixes this bundle cleared
	// and has not appended to since: their next append goes to slot zero.
	emptied map[string]bool
	succ    []byte // step's buffer
	// kbuf and sbuf are buffers keys are built in (the writes copy
	// them).
	kbuf, sbuf []byte
	// load, if set, takes the bundle's sets as they are made (a Load's
	// bundle: it does not read, and its batch, not indexed, only gathers
	// other writes, which the load refuses at Commit).
	load *Load
}

// slotZero is the suffix of the first value appended to a bag (or a
// multimap key) that the same bundle has just cleared. A value state is
// a bag written as a clear and an append, so a hot key's value is
// rewritten again and again: with a fresh suffix every time, every read
// of it stepped over all the deleted ones still in the memtable (a count
// per key over 3 keys ran at 850 events/s); at slot zero it is one key,
// which scan steps past with one seek instead of through its versions.
// Fresh suffixes (appendSeq) are never zero, so later appends sort after.
var slotZero = make([]byte, 8)

// appendKey is the key of the next value appended under prefix p.
func (b *Bundle) appendKey(p []byte) []byte {
	if b.emptied[string(p)] {
		delete(b.emptied, string(p))
		return append(p, slotZero...)
	}
	return seqSuffix(p)
}

// emptied notes that prefix p holds nothing now.
func (b *Bundle) emptiedNow(p []byte) {
	if b.emptied == nil {
		b.emptied = map[string]bool{}
	}
	b.emptied[string(p)] = true
}

type lastScan struct {
	lo, hi []byte
	ops    uint32 // the batch's count of writes when scanned
	keys   [][]byte
	ok     bool
}

// closeIter closes the reused iterator (before the batch is closed).
func (b *Bundle) closeIter() {
	if b.it != nil {
		b.it.Close()
		b.it = nil
	}
}

// appendSeq orders appends to bag and multimap cells, parked input and
// ordered-list ties. It is shared by the process's DBs; each checkpoint of
// a DB records it (seqMark), and opening a DB restored from one moves it
// past that mark (raiseAppendSeq), so a process restarted on restored
// state appends after what the previous one wrote, whatever the clocks of
// the two machines say.
var appendSeq atomic.Uint64

// raiseAppendSeq makes the next sequence number greater than mark.
func raiseAppendSeq(mark uint64) {
	for {
		cur := appendSeq.Load()
		if cur >= mark || appendSeq.CompareAndSwap(cur, mark) {
			return
		}
	}
}

// NewBundle starts a bundle.
func (d *DB) NewBundle() *Bundle {
	return &Bundle{db: d, b: d.pdb.NewIndexedBatch()}
}

// maxSizedBatch caps the batch NewBundleSized starts with.
const maxSizedBatch = 16 << 20

// NewBundleSized starts a bundle of a series that write about as much
// each (the bundles of one subtask): its batch starts at the size of the
// last one committed, instead of growing from empty by doubling, which
// allocated and copied each bundle's writes about twice over.
func (d *DB) NewBundleSized() *Bundle {
	if n := d.lastSized.Load(); n > 0 {
		return &Bundle{db: d, b: d.pdb.NewIndexedBatchWithSize(int(min(n, maxSizedBatch))), sized: true}
	}
	return &Bundle{db: d, b: d.pdb.NewIndexedBatch(), sized: true}
}

// Commit makes the bundle's writes durable in the DB (up to the next
// checkpoint: the WAL is off).
func (b *Bundle) Commit() error {
	b.closeIter()
	if b.load != nil {
		return b.load.add(b.b) // sets went to the load: it refuses the rest
	}
	defer b.b.Close()
	if b.sized {
		b.db.lastSized.Store(int64(b.b.Len()))
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("committing bundle state: %w", err)
	}
	return nil
}

// set writes k = v: into the batch, or straight into the load of a
// load's bundle (which Discard cannot take back: abort the load).
func (b *Bundle) set(k, v []byte) error {
	if b.load != nil {
		return b.load.set(k, v)
	}
	return b.b.Set(k, v, nil)
}

// Discard drops the bundle's writes.
func (b *Bundle) Discard() {
	b.closeIter()
	b.b.Close()
}

// scan visits the keys in [lo, hi), as the bundle sees them (its own
// writes included). The iterator is reused: SetOptions moves its bounds
// and refreshes its view of the batch's writes since the last scan. cell
// says lo is a whole cell prefix (cellSplit) and [lo, hi) its keys: with
// the cell comparer the scan is a prefix seek, which skips the sstables
// whose filters do not hold the cell.
func (b *Bundle) scan(lo, hi []byte, cell bool, fn func(k, v []byte) error) error {
	opts := &pebble.IterOptions{LowerBound: lo, UpperBound: hi}
	if b.it == nil {
		it, err := b.b.NewIter(opts)
		if err != nil {
			return fmt.Errorf("reading state: %w", err)
		}
		b.it = it
	} else {
		b.it.SetOptions(opts)
	}
	it := b.it
	b.last.ok = false
	keys, all := b.last.keys[:0], true
	prefix := cell && b.db.cells
	valid := false
	if prefix {
		valid = it.SeekPrefixGE(lo)
	} else {
		valid = it.First()
	}
	for ; valid; valid = b.step(it, prefix) {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("reading state: %w", err)
		}
		if all = all && len(keys) < maxLastScanKeys; all {
			keys = append(keys, append([]byte(nil), it.Key()...))
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("reading state: %w", err)
	}
	b.last = lastScan{lo: append(b.last.lo[:0], lo...), hi: append(b.last.hi[:0], hi...), ops: b.b.Count(), keys: keys, ok: all}
	return nil
}

// step moves it to the next key: past a slot-zero key with a seek to its
// successor, which skips the key's older versions (a rewritten value's)
// that Next would step through one by one (a prefix seek, in a prefix
// scan: the successor has the key's cell prefix).
func (b *Bundle) step(it *pebble.Iterator, prefix bool) bool {
	k := it.Key()
	if len(k) >= len(slotZero) && bytes.Equal(k[len(k)-len(slotZero):], slotZero) {
		b.succ = append(append(b.succ[:0], k...), 0)
		if prefix {
			return it.SeekPrefixGE(b.succ)
		}
		return it.SeekGE(b.succ)
	}
	return it.Next()
}

// maxLastScanKeys bounds the keys a scan remembers for a clear that follows.
const maxLastScanKeys = 16

// deleteRange deletes every key in [lo, hi) (a cell's, if cell: see scan)
// with point deletes. A range
// deletion in an indexed batch makes every later iterator on the batch
// re-fragment all of the batch's range deletions, which turns a bundle of
// value-state writes (each a clear and an append) quadratic; cells are
// small, so deleting their keys one by one is cheap.
func (b *Bundle) deleteRange(lo, hi []byte, cell bool) error {
	l := b.last
	if !l.ok || l.ops != b.b.Count() || !bytes.Equal(l.lo, lo) || !bytes.Equal(l.hi, hi) {
		var keys [][]byte
		err := b.scan(lo, hi, cell, func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		})
		if err != nil {
			return err
		}
		l.keys = keys
	}
	b.last.ok = false
	for _, k := range l.keys {
		if err := b.b.Delete(k, nil); err != nil {
			return fmt.Errorf("deleting state: %w", err)
		}
	}
	return nil
}

func seqSuffix(p []byte) []byte {
	return binary.BigEndian.AppendUint64(p, appendSeq.Add(1))
}

// ReadBag returns the concatenation of everything appended to a bag cell.
func (b *Bundle) ReadBag(c Cell) ([]byte, error) {
	p := c.prefix(spaceBag)
	if b.db.written.never(p) {
		return nil, nil
	}
	var out []byte
	err := b.scan(p, prefixEnd(p), true, func(_, v []byte) error { out = append(out, v...); return nil })
	return out, err
}

// AppendBag appends encoded values to a bag cell.
func (b *Bundle) AppendBag(c Cell, data []byte) error {
	// Built in the bundle's buffer: the filter hashes it, emptied and the
	// write copy it.
	p := c.appendPrefix(b.kbuf[:0], spaceBag)
	b.db.written.add(p)
	k := b.appendKey(p)
	b.kbuf = k
	if err := b.set(k, data); err != nil {
		return fmt.Errorf("appending to state %s: %w", c.StateID, err)
	}
	return nil
}

// ClearBag empties a bag cell.
func (b *Bundle) ClearBag(c Cell) error {
	p := c.prefix(spaceBag)
	if b.db.written.never(p) {
		return nil
	}
	if err := b.deleteRange(p, prefixEnd(p), true); err != nil {
		return fmt.Errorf("clearing state %s: %w", c.StateID, err)
	}
	b.emptiedNow(p)
	return nil
}

// ReadMap returns the concatenated values of one map key of a multimap cell.
func (b *Bundle) ReadMap(c Cell, mapKey []byte) ([]byte, error) {
	p := AppendComponent(c.prefix(spaceMap), mapKey)
	var out []byte
	err := b.scan(p, prefixEnd(p), true, func(_, v []byte) error { out = append(out, v...); return nil })
	return out, err
}

// AppendMap appends encoded values under one map key of a multimap cell.
func (b *Bundle) AppendMap(c Cell, mapKey, data []byte) error {
	if err := b.set(b.appendKey(AppendComponent(c.prefix(spaceMap), mapKey)), data); err != nil {
		return fmt.Errorf("appending to state %s: %w", c.StateID, err)
	}
	return nil
}

// ClearMapKey removes one map key of a multimap cell.
func (b *Bundle) ClearMapKey(c Cell, mapKey []byte) error {
	p := AppendComponent(c.prefix(spaceMap), mapKey)
	if err := b.deleteRange(p, prefixEnd(p), true); err != nil {
		return fmt.Errorf("clearing state %s: %w", c.StateID, err)
	}
	b.emptiedNow(p)
	return nil
}

// MapKeys returns the concatenation of the distinct encoded map keys of a
// multimap cell, in key order.
func (b *Bundle) MapKeys(c Cell) ([]byte, error) {
	p := c.prefix(spaceMap)
	var out, last []byte
	err := b.scan(p, prefixEnd(p), false, func(k, _ []byte) error {
		mk, _, err := ReadComponent(k[len(p):])
		if err != nil {
			return fmt.Errorf("reading map key of state %s: %w", c.StateID, err)
		}
		if last == nil || !bytes.Equal(mk, last) {
			out = append(out, mk...)
			last = append([]byte{}, mk...)
		}
		return nil
	})
	return out, err
}

// ClearMap empties a multimap cell.
func (b *Bundle) ClearMap(c Cell) error {
	p := c.prefix(spaceMap)
	if err := b.deleteRange(p, prefixEnd(p), false); err != nil {
		return fmt.Errorf("clearing state %s: %w", c.StateID, err)
	}
	return nil
}

// ClearCell removes every kind of user state (bag, multimap, ordered list)
// held in a cell: what window expiry does.
func (b *Bundle) ClearCell(c Cell) error {
	for _, space := range []byte{spaceBag, spaceMap, spaceOrdered} {
		p := c.prefix(space)
		if err := b.deleteRange(p, prefixEnd(p), space == spaceBag); err != nil {
			return fmt.Errorf("clearing expired state %s: %w", c.StateID, err)
		}
	}
	return nil
}
