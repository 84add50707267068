package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// formatMajorVersion is pinned to a named version: Pebble's default is old and
// lacks virtual sstables, without which Excise fails. Changing it is a format
// migration of every checkpoint, so do it deliberately.
const formatMajorVersion = pebble.FormatValueSeparation

const (
	defaultMemTableSize      = 64 << 20
	defaultPrivateCacheBytes = 32 << 20
	// maxOpenFiles bounds the sstables kept open by one Cache (all its DBs).
	maxOpenFiles = 1000
	// fileCacheShards: Pebble's default is GOMAXPROCS per DB; one cache is
	// shared by every DB of the process here.
	fileCacheShards = 8
)

var (
	// ErrClosed is returned by operations on a closed DB.
	ErrClosed = errors.New("state: db closed")
	// ErrDBFailed is wrapped by every error of a DB after Pebble reported a
	// fatal error or on-disk corruption: discard the DB and restore the subtask
	// from a checkpoint.
	ErrDBFailed = errors.New("state: db failed")
)

// Cache is a block cache (and sstable file cache) shared by all DBs of a
// process. Each DB holds its own reference, so a Cache may be closed while
// DBs opened with it are still in use.
type Cache struct {
	block *pebble.Cache
	files *pebble.FileCache
	once  sync.Once
}

// NewCache returns a Cache of the given size in bytes.
func NewCache(bytes int64) *Cache {
	return &Cache{
		block: pebble.NewCache(bytes),
		files: pebble.NewFileCache(fileCacheShards, pebble.FileCacheSize(maxOpenFiles)),
	}
}

// Close releases the caller's reference. The memory is freed when the last DB
// using the cache has been closed too. Close is idempotent.
func (c *Cache) Close() {
	c.once.Do(func() {
		c.files.Unref()
		c.block.Unref()
	})
}

// Options configure Open.
type Options struct {
	Dir          string       // directory for this DB (created if missing)
	Cache        *Cache       // shared; nil = a private one
	MemTableSize uint64       // 0 = 64 MiB
	Logger       *slog.Logger // Pebble's messages; nil = slog.Default()
	// MustExist refuses to create a new DB: for opening a restored
	// checkpoint, where a missing file must be an error, not an empty DB.
	MustExist bool
	// Cells opens the DB with the cell comparer (comparer.go): reads of
	// one bag or multimap cell seek by its prefix and skip the sstables
	// whose bloom filters do not hold it. Not for a DB that holds a
	// GroupBuffer. A DB created without it (restored from an older
	// checkpoint) is opened as it was made, and reads scan.
	Cells bool
}

// DB is one Pebble database, normally the state of one stateful subtask.
type DB struct {
	pdb    *pebble.DB
	dir    string
	log    *pebbleLogger
	closed atomic.Bool
	// lastSized is the size of the batch last committed by a bundle from
	// NewBundleSized, the size the next one starts with.
	lastSized atomic.Int64
	// written knows which bag cells and timers were never written; nil
	// unless the DB was created empty (see written.go).
	written *written
	// cells: the DB has the cell comparer, so cell reads are prefix seeks.
	cells bool
	// opts are the DB's Pebble options with their defaults, and cmp its
	// comparer: what a Load writes its sstables with.
	opts *pebble.Options
	cmp  *pebble.Comparer
}

// Open opens (creating if needed) the Pebble database in o.Dir.
func Open(o Options) (*DB, error) {
	if o.Dir == "" {
		return nil, errors.New("state: open db: Options.Dir is empty")
	}
	fresh := !o.MustExist && emptyDir(o.Dir)
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: open db: create dir: %w", err)
	}
	cache := o.Cache
	if cache == nil {
		cache = NewCache(defaultPrivateCacheBytes)
		defer cache.Close() // the DB holds its own reference
	}
	memTable := o.MemTableSize
	if memTable == 0 {
		memTable = defaultMemTableSize
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	lg := &pebbleLogger{log: logger.With("component", "pebble", "dir", o.Dir)}

	opts := &pebble.Options{
		ErrorIfNotExists:   o.MustExist,
		FormatMajorVersion: formatMajorVersion,
		Cache:              cache.block,
		FileCache:          cache.files,
		MemTableSize:       memTable,
		// Room for queued memtables while one flushes during bulk loads.
		MemTableStopWritesThreshold: 4,
		// Durability comes from checkpoints (flush + pebble Checkpoint).
		DisableWAL: true,
		// Compact L0 early but never stall writers on L0 read amplification
		// during bulk loads (CockroachDB uses the same values).
		L0CompactionThreshold: 2,
		L0StopWritesThreshold: 1000,
		LBaseMaxBytes:         64 << 20,
		MaxOpenFiles:          maxOpenFiles,
		// Every checkpoint uploads the MANIFEST whole: keep it small.
		MaxManifestFileSize: 4 << 20,
		Logger:              lg,
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				lg.log.Error("pebble background error", "err", err)
			},
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				lg.failWith(fmt.Errorf("%w: on-disk corruption in %s: %v", ErrDBFailed, info.Path, info.Details))
			},
		},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		opts.Levels[i].FilterType = pebble.TableFilter
	}
	if o.Cells {
		opts.Comparer = cellComparer
	}
	pdb, err := pebble.Open(o.Dir, opts)
	if err != nil && o.Cells && !fresh && strings.Contains(err.Error(), "comparer name") {
		// Made before the cell comparer: open it as it was made.
		lg.log.Info("state restored from an older checkpoint: cell reads scan", "err", err)
		opts.Comparer = nil
		pdb, err = pebble.Open(o.Dir, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("state: open pebble db %s: %w", o.Dir, err)
	}
	opts.EnsureDefaults() // pebble.Open used a copy
	d := &DB{pdb: pdb, dir: o.Dir, log: lg, cells: opts.Comparer == cellComparer, opts: opts, cmp: opts.Comparer}
	if fresh {
		d.written = newWritten()
		return d, nil
	}
	v, closer, err := pdb.Get(unkeyedPrefix(spaceSeqMark))
	switch {
	case err == nil:
		if len(v) == 8 {
			raiseAppendSeq(binary.BigEndian.Uint64(v))
		}
		closer.Close()
	case errors.Is(err, pebble.ErrNotFound):
		// A checkpoint from before the mark: its sequence numbers came
		// from the wall clock in nanoseconds.
		raiseAppendSeq(uint64(time.Now().UnixNano()))
	default:
		pdb.Close()
		return nil, fmt.Errorf("state: open pebble db %s: reading the sequence mark: %w", o.Dir, err)
	}
	return d, nil
}

// Checkpoint writes a consistent copy of the database to dir, which must not
// exist yet: the synchronous part of a checkpoint. The memtable is flushed
// first (the WAL is off, so unflushed writes would be missing), then Pebble
// hard-links the immutable sstables and copies its small mutable files.
func (d *DB) Checkpoint(dir string) error {
	// Every sequence number this DB holds was drawn before now.
	mark := binary.BigEndian.AppendUint64(nil, appendSeq.Load())
	if err := d.pdb.Set(unkeyedPrefix(spaceSeqMark), mark, pebble.NoSync); err != nil {
		return fmt.Errorf("state: checkpoint %s: sequence mark: %w", d.dir, err)
	}
	if err := d.pdb.Flush(); err != nil {
		return fmt.Errorf("state: checkpoint %s: flush: %w", d.dir, err)
	}
	if err := d.pdb.Checkpoint(dir); err != nil {
		return fmt.Errorf("state: checkpoint %s into %s: %w", d.dir, dir, err)
	}
	return nil
}

// Close closes the database. It does not flush the memtable: with the WAL off,
// writes not yet flushed (Pebble().Flush(), a checkpoint) are lost, which is
// intended since durability comes from checkpoints. Pending GroupBuffer
// batches are discarded.
func (d *DB) Close() error {
	if d.closed.Swap(true) {
		return ErrClosed
	}
	if err := d.pdb.Close(); err != nil {
		return fmt.Errorf("state: close pebble db %s: %w", d.dir, err)
	}
	return nil
}

// Err returns nil while the DB is usable, ErrClosed after Close, or an error
// wrapping ErrDBFailed after Pebble reported a fatal error or corruption.
func (d *DB) Err() error {
	if d.closed.Load() {
		return ErrClosed
	}
	return d.log.failure()
}

// Pebble returns the underlying database: the escape hatch for checkpoint,
// restore and rescale code. Bag cells and timers written through it
// bypass the filter of written keys (written.go): they may be read back
// as absent from a DB created empty.
func (d *DB) Pebble() *pebble.DB { return d.pdb }

// Dir returns the directory of the database.
func (d *DB) Dir() string { return d.dir }

// DiskUsage returns the bytes the database uses on disk (sstables, manifest,
// blob files), excluding the memtable.
func (d *DB) DiskUsage() uint64 { return d.pdb.Metrics().DiskSpaceUsage() }

// pebbleLogger is quiet (Pebble's info messages go to slog at debug level) and
// never exits the process: Fatalf marks the DB failed instead, so the next
// operation returns an error and the subtask can be restored.
type pebbleLogger struct {
	log  *slog.Logger
	fail atomicErr
}

type atomicErr struct{ p atomic.Pointer[error] }

func (a *atomicErr) set(err error) { a.p.CompareAndSwap(nil, &err) }

func (a *atomicErr) get() error {
	if p := a.p.Load(); p != nil {
		return *p
	}
	return nil
}

func (l *pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l *pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

func (l *pebbleLogger) Fatalf(format string, args ...any) {
	l.failWith(fmt.Errorf("%w: pebble fatal error: %s", ErrDBFailed, fmt.Sprintf(format, args...)))
}

func (l *pebbleLogger) failWith(err error) {
	l.log.Error("pebble db failed; it must be restored from a checkpoint", "err", err)
	l.fail.set(err)
}

func (l *pebbleLogger) failure() error { return l.fail.get() }
