package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/cockroachdb/pebble/v2"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/state"
)

// config is one benchmark run.
type config struct {
	StateBytes  int64   // logical state: keys plus values
	ValueBytes  int     // bytes per value (random, incompressible)
	Intervals   int     // incremental checkpoints after the first, full one
	ChangePct   float64 // percent of the keys overwritten before each incremental checkpoint
	Storage     string  // "file" or "gcs" (in-process fake-gcs-server)
	VerifyKeys  int     // keys whose last value is kept in memory and checked after recovery
	Settle      bool    // wait for Pebble's compactions to finish after each checkpoint
	CacheBytes  int64   // block cache (state.NewCache) of the DB and of the restored DB
	Concurrency int     // Uploader.SetConcurrency; 0 = the package default
	Seed        uint64
	TempDir     string    // parent of the work directory; "" = os.TempDir()
	Log         io.Writer // progress lines; nil = none
}

func defaultConfig() config {
	return config{
		StateBytes: 1 << 30,
		ValueBytes: 1000,
		Intervals:  10,
		ChangePct:  1,
		Storage:    "file",
		VerifyKeys: 10_000,
		Settle:     true,
		CacheBytes: 256 << 20, // what the engine gives all its DBs (runner/engine)
		Seed:       1,
	}
}

func (c *config) check() error {
	switch {
	case c.ValueBytes < 1:
		return errors.New("--value_bytes must be at least 1")
	case c.StateBytes < int64(c.ValueBytes+keyLen):
		return fmt.Errorf("--state_bytes must hold at least one key (%d bytes)", c.ValueBytes+keyLen)
	case c.Intervals < 1:
		return errors.New("--intervals must be at least 1")
	case c.ChangePct <= 0 || c.ChangePct > 100:
		return errors.New("--change_pct must be in (0, 100]")
	case c.Storage != "file" && c.Storage != "gcs":
		return fmt.Errorf("--storage=%q: want file or gcs", c.Storage)
	case c.VerifyKeys < 1:
		return errors.New("--verify_keys must be at least 1")
	case c.CacheBytes < 1:
		return errors.New("--cache_bytes must be positive")
	}
	if n := c.StateBytes / int64(c.ValueBytes+keyLen); n > maxKeys {
		return fmt.Errorf("--state_bytes / (--value_bytes + %d) = %d keys: at most %d", keyLen, n, maxKeys)
	}
	return nil
}

// The job and the one stateful subtask whose state is checkpointed.
const (
	jobID          = "chkbench"
	maxParallelism = state.DefaultMaxParallelism
)

var subtask = checkpoint.SubtaskID{Stage: "s1", Subtask: 0}

// checkpointResult is one checkpoint, from the flush to the end of Retain.
type checkpointResult struct {
	ID           int64
	Incremental  bool  // false for the first, full checkpoint
	AfterRestore bool  // the first checkpoint of the restored DB
	ChangedKeys  int   // keys overwritten since the previous checkpoint
	ChangedBytes int64 // their keys and values

	Files         int
	FullBytes     int64 // sum of the sizes of the checkpoint's files (metadata)
	UploadedBytes int64 // UploadResult.UploadedBytes: files uploaded
	UploadedFiles int
	ReusedFiles   int
	WrittenBytes  int64 // everything written to storage: files, file list, metadata
	ManifestBytes int64 // the MANIFEST, uploaded whole every time
	StoredBytes   int64 // bytes of the job in storage after Retain
	DeletedShared int   // shared objects Retain deleted

	Write  time.Duration // writing the changed keys (not part of the checkpoint)
	Sync   time.Duration // Flush + Checkpoint: the synchronous part
	Upload time.Duration
	Commit time.Duration // Metadata, Commit, Committed
	Total  time.Duration // Flush to committed
	Retain time.Duration
	Settle time.Duration // compactions after it (with config.Settle)
}

func (c *checkpointResult) uploadedPct() float64 { return pct(c.UploadedBytes, c.FullBytes) }

// recoveryResult is the recovery of the last checkpoint into a new DB.
type recoveryResult struct {
	CheckpointID int64
	Files        int
	Bytes        int64 // size of the checkpoint
	ReadBytes    int64 // read from storage
	Latest       time.Duration
	Restore      time.Duration
	Open         time.Duration
	FirstRead    time.Duration
	Total        time.Duration // nothing → an open DB that has served a read
	Verified     int           // sampled keys read back with their last value
	Verify       time.Duration
	ScannedKeys  int // keys found by a full scan (must be all of them)
	Scan         time.Duration
}

type results struct {
	StorageURL  string
	Keys        int
	KeyBytes    int
	StateBytes  int64 // logical: Keys × (KeyBytes + ValueBytes)
	Load        time.Duration
	LoadSettle  time.Duration
	Checkpoints []checkpointResult // the full one, the incremental ones, the one after restore
	Recovery    recoveryResult
}

// incremental returns the incremental checkpoints of the measured series (not
// the full one, not the one after the restore).
func (r *results) incremental() []checkpointResult {
	var out []checkpointResult
	for _, c := range r.Checkpoints {
		if c.Incremental && !c.AfterRestore {
			out = append(out, c)
		}
	}
	return out
}

// bench is the state of one run.
type bench struct {
	cfg  config
	work string // temporary; everything is under it
	rng  *rand.Rand
	vals *rand.ChaCha8 // value bytes
	keys []uint16      // key group of each key index
	n    int
	logf func(format string, args ...any)

	store *countingStorage
	gcs   *fakestorage.Server // with Storage "gcs"
	gcsc  *gcs.Client
	db    *state.DB
	cache *state.Cache
	up    *checkpoint.Uploader

	want map[int][]byte // the sample: key index → last value written
}

// run runs the benchmark: load, full checkpoint, cfg.Intervals incremental
// ones, recovery of the last, and one checkpoint of the restored DB. It
// returns an error if anything fails, including a wrong value read back.
func run(ctx context.Context, cfg config) (res *results, err error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(cfg.TempDir, "chkbench-")
	if err != nil {
		return nil, err
	}
	b := &bench{
		cfg:  cfg,
		work: work,
		rng:  rand.New(rand.NewPCG(cfg.Seed, 0x636b6231)),
		vals: rand.NewChaCha8(seed32(cfg.Seed)),
		n:    int(cfg.StateBytes / int64(cfg.ValueBytes+keyLen)),
		logf: func(string, ...any) {},
		want: map[int][]byte{},
	}
	if cfg.Log != nil {
		b.logf = func(format string, args ...any) {
			fmt.Fprintf(cfg.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
		}
	}
	defer func() {
		if cerr := b.close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	res = &results{Keys: b.n, KeyBytes: keyLen, StateBytes: int64(b.n) * int64(keyLen+cfg.ValueBytes)}

	if err := b.openStorage(ctx); err != nil {
		return nil, err
	}
	res.StorageURL = b.store.String()
	b.cache = state.NewCache(cfg.CacheBytes)
	b.db, err = state.Open(state.Options{Dir: filepath.Join(work, "db"), Cache: b.cache})
	if err != nil {
		return nil, err
	}
	if b.up, err = checkpoint.NewUploader(b.store, jobID, subtask, nil); err != nil {
		return nil, err
	}
	if cfg.Concurrency > 0 {
		b.up.SetConcurrency(cfg.Concurrency)
	}

	b.logf("loading %d keys (%s of state) into %s", b.n, mib(res.StateBytes), b.db.Dir())
	start := time.Now()
	if err := b.load(ctx); err != nil {
		return nil, err
	}
	res.Load = time.Since(start)
	// The load's compactions are not part of any interval: always wait.
	if res.LoadSettle, err = b.settle(ctx, true); err != nil {
		return nil, err
	}
	b.logf("loaded in %v, compactions settled %v later", res.Load.Round(time.Millisecond), res.LoadSettle.Round(time.Millisecond))

	var last *checkpoint.Metadata
	for id := int64(1); id <= int64(cfg.Intervals)+1; id++ {
		c := checkpointResult{ID: id, Incremental: id > 1}
		if c.Incremental {
			start := time.Now()
			if c.ChangedKeys, c.ChangedBytes, err = b.overwrite(ctx); err != nil {
				return nil, err
			}
			c.Write = time.Since(start)
		}
		if last, err = b.checkpoint(ctx, b.db, b.up, &c); err != nil {
			return nil, err
		}
		if c.Settle, err = b.settle(ctx, cfg.Settle); err != nil {
			return nil, err
		}
		b.logf("checkpoint %d: uploaded %s of %s (%.2f%%) in %v", id, mib(c.UploadedBytes), mib(c.FullBytes), c.uploadedPct(), c.Total.Round(time.Millisecond))
		res.Checkpoints = append(res.Checkpoints, c)
	}

	// The job dies: the DB goes away (unflushed writes are lost, as after a
	// crash; there are none).
	if err := b.db.Close(); err != nil {
		return nil, err
	}
	b.db = nil
	b.cache.Close()
	b.cache = nil

	if err := b.recover(ctx, last, &res.Recovery); err != nil {
		return nil, err
	}
	b.logf("recovered checkpoint %d in %v", res.Recovery.CheckpointID, res.Recovery.Total.Round(time.Millisecond))

	// The restored job goes on: its first checkpoint, with an uploader that
	// knows the checkpoint it was restored from and nothing else.
	up, err := checkpoint.NewUploader(b.store, jobID, subtask, last)
	if err != nil {
		return nil, err
	}
	if cfg.Concurrency > 0 {
		up.SetConcurrency(cfg.Concurrency)
	}
	c := checkpointResult{ID: last.CheckpointID + 1, Incremental: true, AfterRestore: true}
	start = time.Now()
	if c.ChangedKeys, c.ChangedBytes, err = b.overwrite(ctx); err != nil {
		return nil, err
	}
	c.Write = time.Since(start)
	if _, err := b.checkpoint(ctx, b.db, up, &c); err != nil {
		return nil, err
	}
	b.logf("checkpoint %d (after restore): uploaded %s of %s (%.2f%%) in %v", c.ID, mib(c.UploadedBytes), mib(c.FullBytes), c.uploadedPct(), c.Total.Round(time.Millisecond))
	res.Checkpoints = append(res.Checkpoints, c)
	return res, nil
}

// close releases everything and removes the work directory.
func (b *bench) close() error {
	var errs []error
	if b.db != nil {
		errs = append(errs, b.db.Close())
	}
	if b.cache != nil {
		b.cache.Close()
	}
	if b.store != nil {
		errs = append(errs, b.store.Close())
	}
	if b.gcsc != nil {
		errs = append(errs, b.gcsc.Close())
	}
	if b.gcs != nil {
		b.gcs.Stop()
	}
	errs = append(errs, os.RemoveAll(b.work))
	return errors.Join(errs...)
}

func (b *bench) openStorage(ctx context.Context) error {
	var st storage.Storage
	var err error
	switch b.cfg.Storage {
	case "file":
		st, err = storage.Open(ctx, "file://"+filepath.ToSlash(filepath.Join(b.work, "store")))
	case "gcs":
		// As storagetest.FakeGCS does, without a testing.TB: an in-process
		// server (memory backend, no listener) and its client.
		b.gcs, err = fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
		if err != nil {
			return fmt.Errorf("fake GCS server: %w", err)
		}
		b.gcs.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "chkbench"})
		b.gcsc = b.gcs.Client()
		st, err = storage.Open(ctx, "gs://chkbench/checkpoints", storage.WithGCSClient(b.gcsc))
	}
	if err != nil {
		return err
	}
	b.store = &countingStorage{Storage: st}
	return nil
}

// Keys look like the engine's bag (ValueState) keys (state/keyed.go):
//
//	key group (2 bytes, big endian) | 'u' | transform | state ID | window | key | seq (8 bytes)
//
// with the variable parts encoded by state.AppendComponent, the user key a
// Beam string ("key-" and 10 digits, length-prefixed) and the global window
// (empty). The engine writes a ValueState as a clear and an append under a
// new sequence number; here a key is overwritten in place, which changes the
// same amount of sstable data.
const (
	transformID = "e7"
	stateID     = "count"
	keyDigits   = 10
	maxKeys     = 9_999_999_999
)

var keyLen = len(appendKey(nil, 0, 0))

func userKey(dst []byte, i int) []byte {
	dst = append(dst, byte(4+keyDigits)) // varint length: one byte
	return fmt.Appendf(dst, "key-%0*d", keyDigits, i)
}

func appendKey(dst []byte, keyGroup uint16, i int) []byte {
	var uk [1 + 4 + keyDigits]byte
	dst = binary.BigEndian.AppendUint16(dst, keyGroup)
	dst = append(dst, 'u')
	dst = state.AppendComponent(dst, []byte(transformID))
	dst = state.AppendComponent(dst, []byte(stateID))
	dst = state.AppendComponent(dst, nil)
	dst = state.AppendComponent(dst, userKey(uk[:0], i))
	return binary.BigEndian.AppendUint64(dst, 1)
}

func (b *bench) key(dst []byte, i int) []byte { return appendKey(dst, b.keys[i], i) }

const batchBytes = 4 << 20

// load writes every key once, in key order (key group, then index), so the
// load is a sequence of non-overlapping flushes rather than a compaction
// storm, and picks the sample of keys to verify.
func (b *bench) load(ctx context.Context) error {
	b.keys = make([]uint16, b.n)
	var count [maxParallelism + 1]int
	var uk []byte
	for i := range b.n {
		uk = userKey(uk[:0], i)
		kg := state.KeyGroup(uk, maxParallelism)
		b.keys[i] = uint16(kg)
		count[kg+1]++
	}
	for kg := 1; kg <= maxParallelism; kg++ {
		count[kg] += count[kg-1]
	}
	order := make([]int32, b.n)
	for i := range b.n {
		kg := b.keys[i]
		order[count[kg]] = int32(i)
		count[kg]++
	}

	if b.cfg.VerifyKeys >= b.n {
		for i := range b.n {
			b.want[i] = nil
		}
	} else {
		for len(b.want) < b.cfg.VerifyKeys {
			b.want[b.rng.IntN(b.n)] = nil
		}
	}

	w := b.newWriter()
	for _, i := range order {
		if err := w.set(ctx, int(i)); err != nil {
			return err
		}
	}
	if err := w.commit(); err != nil {
		return err
	}
	// Flush so that the load is on disk before the first checkpoint is
	// timed, as it would be in a job that has been running for a while.
	return b.db.Pebble().Flush()
}

// overwrite sets about cfg.ChangePct percent of the keys, distinct, chosen at
// random, to new random values.
func (b *bench) overwrite(ctx context.Context) (keys int, bytes int64, err error) {
	m := max(1, int(math.Round(float64(b.n)*b.cfg.ChangePct/100)))
	m = min(m, b.n)
	chosen := make([]uint64, (b.n+63)/64)
	w := b.newWriter()
	for k := 0; k < m; {
		i := b.rng.IntN(b.n)
		if chosen[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		chosen[i/64] |= 1 << (i % 64)
		k++
		if err := w.set(ctx, i); err != nil {
			return 0, 0, err
		}
	}
	if err := w.commit(); err != nil {
		return 0, 0, err
	}
	return m, int64(m) * int64(keyLen+b.cfg.ValueBytes), nil
}

// writer writes keys with fresh random values in batches of batchBytes.
type writer struct {
	b     *bench
	batch *pebble.Batch
	key   []byte
	val   []byte
}

func (b *bench) newWriter() *writer {
	return &writer{b: b, batch: b.db.Pebble().NewBatch(), val: make([]byte, b.cfg.ValueBytes)}
}

func (w *writer) set(ctx context.Context, i int) error {
	_, _ = w.b.vals.Read(w.val)
	w.key = w.b.key(w.key[:0], i)
	if err := w.batch.Set(w.key, w.val, nil); err != nil {
		return err
	}
	if _, ok := w.b.want[i]; ok {
		w.b.want[i] = bytes.Clone(w.val)
	}
	if w.batch.Len() >= batchBytes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := w.commit(); err != nil {
			return err
		}
		w.batch = w.b.db.Pebble().NewBatch()
	}
	return nil
}

func (w *writer) commit() error {
	defer w.batch.Close()
	if err := w.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// settle waits until Pebble has no flush or compaction running for 100 ms,
// as it would be some time into a checkpoint interval, and returns how long
// that took. If !wait it returns at once.
func (b *bench) settle(ctx context.Context, wait bool) (time.Duration, error) {
	if !wait {
		return 0, nil
	}
	start := time.Now()
	for quiet := 0; quiet < 5; {
		m := b.db.Pebble().Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 {
			quiet++
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(start) - 100*time.Millisecond, nil
}

// checkpoint takes checkpoint c.ID of db the way doc.go's "Life of a
// checkpoint" says, filling in c, and returns its metadata.
func (b *bench) checkpoint(ctx context.Context, db *state.DB, up *checkpoint.Uploader, c *checkpointResult) (*checkpoint.Metadata, error) {
	dir := filepath.Join(b.work, "local", fmt.Sprintf("chk-%d", c.ID)) // must not exist
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	written := b.store.written.Load()

	start := time.Now()
	if err := db.Pebble().Flush(); err != nil {
		return nil, fmt.Errorf("checkpoint %d: flush: %w", c.ID, err)
	}
	if err := db.Pebble().Checkpoint(dir); err != nil {
		return nil, fmt.Errorf("checkpoint %d: pebble checkpoint: %w", c.ID, err)
	}
	c.Sync = time.Since(start)

	t := time.Now()
	up1, err := up.Upload(ctx, c.ID, dir)
	if err != nil {
		return nil, err
	}
	c.Upload = time.Since(t)

	t = time.Now()
	meta := &checkpoint.Metadata{
		JobID:          jobID,
		CheckpointID:   c.ID,
		MaxParallelism: maxParallelism,
		Created:        time.Now(),
		TransformNames: map[string]string{transformID: "CountPerKey/ParDo(count)"},
		Subtasks: []checkpoint.SubtaskState{
			{SubtaskID: subtask, KeyGroups: checkpoint.KeyGroupRange{Start: 0, End: maxParallelism}, Files: up1.Files},
		},
	}
	if err := checkpoint.Commit(ctx, b.store, meta); err != nil {
		return nil, err
	}
	up.Committed(meta)
	c.Commit = time.Since(t)
	c.Total = time.Since(start)

	t = time.Now()
	rr, err := checkpoint.Retain(ctx, b.store, jobID, 1)
	if err != nil {
		return nil, err
	}
	c.Retain = time.Since(t)
	c.DeletedShared = rr.DeletedShared
	if len(rr.Retained) != 1 || rr.Retained[0] != c.ID || len(rr.Unreadable) > 0 {
		return nil, fmt.Errorf("checkpoint %d: Retain kept %v (unreadable: %v), want just this one", c.ID, rr.Retained, rr.Unreadable)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}

	c.WrittenBytes = b.store.written.Load() - written
	c.UploadedBytes, c.UploadedFiles, c.ReusedFiles = up1.UploadedBytes, up1.UploadedFiles, up1.ReusedFiles
	files := meta.Subtask(subtask).Files
	c.Files = len(files)
	for _, f := range files {
		c.FullBytes += f.Size
		if strings.HasPrefix(f.Local, "MANIFEST-") {
			c.ManifestBytes = f.Size
		}
	}
	if c.FullBytes != up1.TotalBytes {
		return nil, fmt.Errorf("checkpoint %d: the metadata's files add up to %d bytes, UploadResult.TotalBytes says %d", c.ID, c.FullBytes, up1.TotalBytes)
	}
	if c.UploadedBytes > c.WrittenBytes {
		return nil, fmt.Errorf("checkpoint %d: UploadResult.UploadedBytes %d, but only %d bytes were written to storage", c.ID, c.UploadedBytes, c.WrittenBytes)
	}
	if c.StoredBytes, err = storedBytes(ctx, b.store); err != nil {
		return nil, err
	}
	return meta, nil
}

// storedBytes is the size of everything the job has in storage.
func storedBytes(ctx context.Context, st storage.Storage) (int64, error) {
	names, err := st.List(ctx, jobID+"/")
	if err != nil {
		return 0, err
	}
	var total int64
	for _, n := range names {
		size, err := st.Stat(ctx, n)
		if err != nil {
			return 0, err
		}
		total += size
	}
	return total, nil
}

// recover restores the newest checkpoint into a new directory, as a new
// process would: Latest, Restore, state.Open with MustExist, a first read;
// then it checks the sampled keys and counts every key. The restored DB is
// left open in b.db.
func (b *bench) recover(ctx context.Context, want *checkpoint.Metadata, r *recoveryResult) error {
	dir := filepath.Join(b.work, "restored", "db")
	read := b.store.read.Load()
	start := time.Now()

	meta, skipped, err := checkpoint.Latest(ctx, b.store, jobID)
	if err != nil {
		return err
	}
	if skipped != nil {
		return fmt.Errorf("recovery: Latest skipped checkpoints: %w", skipped)
	}
	if meta.CheckpointID != want.CheckpointID {
		return fmt.Errorf("recovery: Latest = checkpoint %d, want %d", meta.CheckpointID, want.CheckpointID)
	}
	r.Latest = time.Since(start)

	t := time.Now()
	if err := checkpoint.Restore(ctx, b.store, meta, subtask, dir); err != nil {
		return err
	}
	r.Restore = time.Since(t)

	t = time.Now()
	b.cache = state.NewCache(b.cfg.CacheBytes)
	if b.db, err = state.Open(state.Options{Dir: dir, Cache: b.cache, MustExist: true}); err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	r.Open = time.Since(t)

	// The first read: the smallest sampled index, for determinism.
	first := -1
	for i := range b.want {
		if first < 0 || i < first {
			first = i
		}
	}
	t = time.Now()
	if err := b.verify(first); err != nil {
		return err
	}
	r.FirstRead = time.Since(t)
	r.Total = time.Since(start)

	r.CheckpointID = meta.CheckpointID
	for _, f := range meta.Subtask(subtask).Files {
		r.Files++
		r.Bytes += f.Size
	}
	r.ReadBytes = b.store.read.Load() - read

	t = time.Now()
	for i := range b.want {
		if err := b.verify(i); err != nil {
			return err
		}
		r.Verified++
	}
	r.Verify = time.Since(t)

	t = time.Now()
	it, err := b.db.Pebble().NewIter(nil)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if len(it.Key()) != keyLen || len(it.Value()) != b.cfg.ValueBytes {
			_ = it.Close()
			return fmt.Errorf("recovery: key %q has %d bytes and a value of %d bytes, want %d and %d", it.Key(), len(it.Key()), len(it.Value()), keyLen, b.cfg.ValueBytes)
		}
		r.ScannedKeys++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("recovery: scan: %w", err)
	}
	r.Scan = time.Since(t)
	if r.ScannedKeys != b.n {
		return fmt.Errorf("recovery: the restored DB has %d keys, want %d", r.ScannedKeys, b.n)
	}
	return nil
}

// verify reads key i from the DB and compares it with its last value.
func (b *bench) verify(i int) error {
	want := b.want[i]
	k := b.key(nil, i)
	v, closer, err := b.db.Pebble().Get(k)
	if err != nil {
		return fmt.Errorf("recovery: read key %d (%q): %w", i, k, err)
	}
	defer closer.Close()
	if !bytes.Equal(v, want) {
		return fmt.Errorf("recovery: key %d (%q) has a value of %d bytes that is not the last one written (%d bytes)", i, k, len(v), len(want))
	}
	return nil
}

// countingStorage counts the bytes written to and read from a Storage.
type countingStorage struct {
	storage.Storage
	written atomic.Int64
	read    atomic.Int64
}

func (c *countingStorage) Put(ctx context.Context, name string, r io.Reader) error {
	cr := &countingReader{r: r}
	err := c.Storage.Put(ctx, name, cr)
	if err == nil {
		c.written.Add(cr.n)
	}
	return err
}

func (c *countingStorage) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	err := c.Storage.PutIfAbsent(ctx, name, data)
	if err == nil {
		c.written.Add(int64(len(data)))
	}
	return err
}

func (c *countingStorage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := c.Storage.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return &countingReadCloser{ReadCloser: r, n: &c.read}, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

type countingReadCloser struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingReadCloser) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func seed32(s uint64) (out [32]byte) {
	binary.LittleEndian.PutUint64(out[:], s)
	copy(out[8:], "weir chkbench values")
	return out
}

func pct(part, whole int64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
