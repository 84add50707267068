package state

import (
	"hash/maphash"
	"os"
	"sync/atomic"
)

// written is a Bloom filter of the bag cells and timers a DB has been
// given since it was created empty: a cell or timer it does not hold was
// never written, so a bundle reads it as empty without asking Pebble.
// Pebble keeps Bloom filters in its sstables, but not in its memtables,
// where a stateful job's reads of new keys (half of them in the stateful
// benchmark) and its timer replacements spend their time missing.
//
// It only ever says "absent" for keys that were never written: every
// write path of the two spaces it covers (Bundle.AppendBag, and
// Bundle.PutTimer for the timer lookup key) adds to it, and a DB that
// held data when it was opened (restored from a checkpoint, or a reused
// directory) or was bulk loaded (Load) has no filter at all. It is never cleared, so its false
// positive rate grows with the distinct cells a subtask ever writes: a
// fixed size bounds its memory, and once it is saturated it passes every
// lookup on to Pebble, as if it were not there.
type written struct {
	seed maphash.Seed
	bits atomic.Pointer[[writtenBits / 64]atomic.Uint64] // nil until the first add
}

const (
	writtenBits   = 1 << 23 // 1 MiB per DB
	writtenHashes = 3
)

func newWritten() *written { return &written{seed: maphash.MakeSeed()} }

// positions calls fn with each of k's bit positions.
func (w *written) positions(k []byte, fn func(word int, bit uint64) bool) bool {
	h := maphash.Bytes(w.seed, k)
	h1, h2 := uint32(h), uint32(h>>32)|1
	for i := uint32(0); i < writtenHashes; i++ {
		p := (h1 + i*h2) % writtenBits
		if !fn(int(p/64), 1<<(p%64)) {
			return false
		}
	}
	return true
}

// add records k as written. Safe for concurrent use. The bits are
// allocated by the first add, so a DB that holds no bags or timers (a
// GroupByKey's) does not pay for them.
func (w *written) add(k []byte) {
	if w == nil {
		return
	}
	bits := w.bits.Load()
	if bits == nil {
		w.bits.CompareAndSwap(nil, new([writtenBits / 64]atomic.Uint64))
		bits = w.bits.Load()
	}
	w.positions(k, func(word int, bit uint64) bool {
		if bits[word].Load()&bit == 0 {
			bits[word].Or(bit)
		}
		return true
	})
}

// never reports whether k was certainly never written. A nil filter
// knows nothing.
func (w *written) never(k []byte) bool {
	if w == nil {
		return false
	}
	bits := w.bits.Load()
	if bits == nil {
		return true // nothing was ever added
	}
	return !w.positions(k, func(word int, bit uint64) bool { return bits[word].Load()&bit != 0 })
}

// emptyDir reports whether dir is missing or holds no files: a DB opened
// there starts empty.
func emptyDir(dir string) bool {
	ents, err := os.ReadDir(dir)
	return os.IsNotExist(err) || (err == nil && len(ents) == 0)
}
