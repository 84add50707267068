package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultLoadRunBytes is the memory a Load gathers before it writes a run
// out (64 MiB).
const DefaultLoadRunBytes = 64 << 20

// Load is a bulk load into a DB that was created empty (the restore of a
// savepoint): the writes of its bundles are gathered in memory, sorted,
// and written as sstables that Pebble ingests at Finish, instead of going
// through the memtable, its flushes and the compactions they cause. A run
// is written each time the gathered keys and values reach the run size,
// and at Finish. Keys start with their key group, and a run keeps back the
// entries of its last key group for the next: when bundles come in
// key-group order (a savepoint's files, read in key-group order) the runs
// do not overlap, and Pebble puts them all in its last level, where
// nothing compacts them again. Runs that overlap are ingested one after
// the other, later runs winning, as later commits do.
//
// A load's bundles only write, and their sets go to the load as they are
// made (Discard takes nothing back: Abort the load): a DB created empty
// holds nothing to read, and nothing the load gathered is visible before
// Finish. SetTimer sets a timer without looking for an earlier setting,
// and AppendOrdered numbers entries from the process's sequence alone. A
// key written twice with two values in one run (a timer set twice at two
// times) fails the load: what it loads is a savepoint's, which holds each
// timer and entry once. Writes other than sets (deletes, range deletes)
// fail it too. Not safe for concurrent use.
type Load struct {
	db      *DB
	dir     string // the runs' sstables until Pebble takes them
	runSize int
	chunks  [][]byte // the gathered keys and values, which the entries point into
	size    int      // their bytes
	next    int      // the size at which the next run is written
	// heads are the gathered writes by the first four bytes of their
	// keys (head): each bucket holds its writes in the order they came,
	// mostly in key order already.
	heads map[uint32]*bucket
	runs  []loadRun
	done  bool
}

// loadEnt is one gathered write: its key and value in chunks[chunk].
// Writes come in ascending (chunk, koff).
type loadEnt struct {
	chunk, koff, klen, voff, vlen uint32
}

// bucket is the writes of one head, in blocks of loadBlockEnts: a bucket
// grows without copying what it holds.
type bucket struct {
	blocks [][]loadEnt
	n      int
}

// loadBlockEnts is the entries of a bucket's block (a variable: tests make
// it small, so that buckets span blocks).
var loadBlockEnts = 2048

// loadBlocks are blocks of buckets written out, for the next.
var loadBlocks = sync.Pool{New: func() any { b := make([]loadEnt, 0, loadBlockEnts); return &b }}

func (bk *bucket) add(e loadEnt) {
	last := len(bk.blocks) - 1
	if last < 0 || len(bk.blocks[last]) == loadBlockEnts {
		bk.blocks = append(bk.blocks, (*loadBlocks.Get().(*[]loadEnt))[:0])
		last++
	}
	bk.blocks[last] = append(bk.blocks[last], e)
	bk.n++
}

// release gives bk's blocks back to loadBlocks.
func (bk *bucket) release() {
	for _, b := range bk.blocks {
		b = b[:0]
		loadBlocks.Put(&b)
	}
	bk.blocks, bk.n = nil, 0
}

// loadRun is a written run: its sstable and its key range.
type loadRun struct {
	path     string
	min, max []byte
}

// NewLoad starts a bulk load into d, which must have been created empty,
// hold nothing yet, and not have been loaded before. runBytes bounds the
// memory it gathers before it writes a run (<= 0: DefaultLoadRunBytes).
func (d *DB) NewLoad(runBytes int) (*Load, error) {
	if d.written == nil {
		return nil, fmt.Errorf("state: load into %s: the DB was not created empty, or was loaded before", d.dir)
	}
	if runBytes <= 0 {
		runBytes = DefaultLoadRunBytes
	}
	dir, err := os.MkdirTemp(filepath.Dir(d.dir), filepath.Base(d.dir)+".load-")
	if err != nil {
		return nil, fmt.Errorf("state: load into %s: %w", d.dir, err)
	}
	// Loaded, the DB is as one restored from a checkpoint: it holds state
	// it was not given through bundles, and has no filter of written keys.
	d.written = nil
	return &Load{db: d, dir: dir, runSize: runBytes, next: runBytes, heads: map[uint32]*bucket{}}, nil
}

// NewBundle starts a bundle whose sets go straight to the load; any other
// write fails the load when the bundle commits.
func (l *Load) NewBundle() *Bundle {
	return &Bundle{db: l.db, b: l.db.pdb.NewBatch(), load: l}
}

// loadChunkBytes is the size of the chunks a load gathers writes in: they
// are never grown, so gathering copies each write once.
const loadChunkBytes = 1 << 20

// loadChunks are chunks written out, for the next run or load: fresh
// memory costs a page fault per page on first touch.
var loadChunks = sync.Pool{New: func() any { b := make([]byte, 0, loadChunkBytes); return &b }}

// releaseChunks gives l's chunks back to loadChunks.
func (l *Load) releaseChunks() {
	for _, c := range l.chunks {
		if cap(c) == loadChunkBytes {
			c = c[:0]
			loadChunks.Put(&c)
		}
	}
	l.chunks = nil
}

// head is the bucket of key k: its first four bytes (zeros past its end,
// which keeps the buckets' order that of their keys): its key group, key
// space, and the timer domain in the timer spaces, so that a subtask's
// event-time timers and its expiry timers, which come interleaved but each
// in order, sort apart.
func head(k []byte) uint32 {
	var h [4]byte
	copy(h[:], k)
	return binary.BigEndian.Uint32(h[:])
}

// set gathers the write k = v of a bundle.
func (l *Load) set(k, v []byte) error {
	if l.done {
		return fmt.Errorf("state: load into %s: a write after Finish", l.db.dir)
	}
	n := len(k) + len(v)
	last := len(l.chunks) - 1
	if last < 0 || len(l.chunks[last])+n > cap(l.chunks[last]) {
		c := make([]byte, 0, n)
		if n <= loadChunkBytes {
			c = (*loadChunks.Get().(*[]byte))[:0]
		}
		l.chunks = append(l.chunks, c)
		last++
	}
	c := l.chunks[last]
	off := len(c)
	if off+n > math.MaxUint32 || len(l.chunks) > math.MaxUint32 {
		return fmt.Errorf("state: load into %s: a write of %d bytes", l.db.dir, n)
	}
	l.chunks[last] = append(append(c, k...), v...)
	l.size += n
	e := loadEnt{chunk: uint32(last), koff: uint32(off), klen: uint32(len(k)), voff: uint32(off + len(k)), vlen: uint32(len(v))}
	h := head(k)
	bk := l.heads[h]
	if bk == nil {
		bk = &bucket{}
		l.heads[h] = bk
	}
	bk.add(e)
	if l.size >= l.next {
		err := l.writeRun(false)
		// The next run once as much again is gathered (a run that held
		// all back, one key group larger than a run, waits for more).
		l.next = l.size + l.runSize
		return err
	}
	return nil
}

// add takes a committed bundle's batch: it holds the bundle's writes
// other than sets, which a load refuses.
func (l *Load) add(b *pebble.Batch) error {
	defer b.Close()
	if b.Empty() {
		return nil
	}
	r := b.Reader()
	kind, _, _, _, err := r.Next()
	if err != nil {
		return fmt.Errorf("state: load into %s: reading a bundle: %w", l.db.dir, err)
	}
	return fmt.Errorf("state: load into %s: a %s write: a load only sets keys", l.db.dir, kind)
}

func (l *Load) key(e loadEnt) []byte   { return l.chunks[e.chunk][e.koff : e.koff+e.klen] }
func (l *Load) value(e loadEnt) []byte { return l.chunks[e.chunk][e.voff : e.voff+e.vlen] }

// order sorts a bucket by key; equal keys keep the order they came in.
// Its blocks are the entries in order (most often as they came).
func (l *Load) order(bk *bucket) [][]loadEnt {
	cmp := func(a, b loadEnt) int {
		if c := bytes.Compare(l.key(a), l.key(b)); c != 0 {
			return c
		}
		if a.chunk != b.chunk {
			return int(a.chunk) - int(b.chunk)
		}
		return int(a.koff) - int(b.koff)
	}
	var prev []byte
	for _, b := range bk.blocks {
		for _, e := range b {
			k := l.key(e)
			if bytes.Compare(prev, k) > 0 {
				all := slices.Concat(bk.blocks...)
				slices.SortFunc(all, cmp)
				return [][]loadEnt{all}
			}
			prev = k
		}
	}
	return bk.blocks
}

// writeRun writes what is gathered as one sstable, but for the writes of
// the last key group unless all is true (they stay for the next run).
// Keys sort bytewise (both comparers of this package do), so the buckets,
// each sorted, in the order of their heads are the run.
func (l *Load) writeRun(all bool) error {
	if len(l.heads) == 0 {
		return nil
	}
	hs := slices.Sorted(maps.Keys(l.heads))
	n := len(hs)
	if !all {
		lastKG := hs[n-1] >> 16
		for n > 0 && hs[n-1]>>16 == lastKG {
			n--
		}
		if n == 0 {
			return nil // one key group: gather on
		}
	}
	path := filepath.Join(l.dir, fmt.Sprintf("run-%06d.sst", len(l.runs)))
	f, err := vfs.Default.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("state: load into %s: %w", l.db.dir, err)
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), l.loadWriterOptions())
	var run loadRun
	for _, h := range hs[:n] {
		bk := l.heads[h]
		blocks := l.order(bk)
		err = l.write(w, blocks)
		if err != nil {
			break
		}
		if run.min == nil {
			run.min = bytes.Clone(l.key(blocks[0][0]))
		}
		last := blocks[len(blocks)-1]
		run.max = l.key(last[len(last)-1])
		bk.release()
		delete(l.heads, h)
	}
	if err != nil {
		w.Close()
		return fmt.Errorf("state: load into %s: %w", l.db.dir, err)
	}
	run.path, run.max = path, bytes.Clone(run.max)
	if err := w.Close(); err != nil {
		return fmt.Errorf("state: load into %s: writing %s: %w", l.db.dir, path, err)
	}
	l.runs = append(l.runs, run)
	// What is held back moves to a chunk of its own.
	var buf []byte
	for _, bk := range l.heads {
		for _, b := range bk.blocks {
			for i, e := range b {
				k, v := l.key(e), l.value(e)
				b[i] = loadEnt{koff: uint32(len(buf)), klen: e.klen, voff: uint32(len(buf) + len(k)), vlen: e.vlen}
				buf = append(append(buf, k...), v...)
			}
		}
	}
	l.releaseChunks()
	l.chunks, l.size = [][]byte{buf}, len(buf)
	return nil
}

// loadWriterOptions are the options of a load's sstables: the DB's for its
// last level, where they go, but without a filter. A load's keys are read
// back as the job runs on (RocksDB's optimize_filters_for_hits makes the
// same trade for its last level): a filter in front of them would spare a
// block read only for keys the restored state does not hold, and costs
// about a tenth of a restore's CPU time to build. Compactions that rewrite
// them add one again.
func (l *Load) loadWriterOptions() sstable.WriterOptions {
	o := l.db.opts.MakeWriterOptions(len(l.db.opts.Levels)-1, l.db.pdb.TableFormat())
	o.FilterPolicy = nil
	return o
}

// write adds the sorted entries of blocks to w, each key once.
func (l *Load) write(w *sstable.Writer, blocks [][]loadEnt) error {
	var pk, pv []byte // the entry before, written once the next differs
	for _, b := range blocks {
		for _, e := range b {
			k, v := l.key(e), l.value(e)
			if pk != nil {
				if bytes.Equal(pk, k) {
					if !bytes.Equal(pv, v) {
						return fmt.Errorf("key %x written twice with two values (a timer set twice, or a cell appended to twice under one sequence number)", k)
					}
					continue
				}
				if err := w.Set(pk, pv); err != nil {
					return fmt.Errorf("writing a run: %w", err)
				}
			}
			pk, pv = k, v
		}
	}
	if pk != nil {
		if err := w.Set(pk, pv); err != nil {
			return fmt.Errorf("writing a run: %w", err)
		}
	}
	return nil
}

// ingest has Pebble take the runs: those that do not overlap the one
// before them together, the others one by one in order.
func (l *Load) ingest() error {
	cmp := l.db.cmp.Compare
	for i := 0; i < len(l.runs); {
		j := i + 1
		for j < len(l.runs) && cmp(l.runs[j-1].max, l.runs[j].min) < 0 {
			j++
		}
		var paths []string
		for _, r := range l.runs[i:j] {
			paths = append(paths, r.path)
		}
		if err := l.db.pdb.Ingest(context.Background(), paths); err != nil {
			return fmt.Errorf("state: load into %s: ingesting %d runs: %w", l.db.dir, len(paths), err)
		}
		i = j
	}
	return nil
}

// Finish writes what is gathered and has Pebble ingest every run: the DB
// holds all the load's writes.
func (l *Load) Finish() error {
	if l.done {
		return fmt.Errorf("state: load into %s: finished twice", l.db.dir)
	}
	err := l.writeRun(true)
	if err == nil {
		err = l.ingest()
	}
	l.Abort()
	return err
}

// Abort ends the load: the DB holds none of its writes (unless Finish
// ingested them).
func (l *Load) Abort() {
	l.done = true
	l.releaseChunks()
	for _, bk := range l.heads {
		bk.release()
	}
	l.heads, l.runs = nil, nil
	os.RemoveAll(l.dir)
}
