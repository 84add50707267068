package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/checkpoint/storage/storagetest"
	"github.com/weir-runner/weir/state"
)

// stores returns a new empty store of each kind.
func stores() map[string]func(t *testing.T) storage.Storage {
	return map[string]func(t *testing.T) storage.Storage{
		"file": func(t *testing.T) storage.Storage {
			st, err := storage.Open(context.Background(), "file://"+t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		"gcs": func(t *testing.T) storage.Storage {
			return storagetest.FakeGCS(t, "gs://weir-test/checkpoints")
		},
	}
}

// model is the expected content of a DB.
type model map[string][]byte

const (
	e2eJob  = "job-e2e"
	numKeys = 40_000
)

var e2eSub = SubtaskID{Stage: "s1", Subtask: 0}

func key(i int) []byte { return fmt.Appendf(nil, "key%08d", i) }

// write sets keys [from, to) to fresh random values (and deletes the keys in
// del), in batches of 5000 keys each followed by a flush, so the DB has
// several sstables.
func write(t *testing.T, db *state.DB, m model, rng *rand.Rand, from, to int, del []int) {
	t.Helper()
	p := db.Pebble()
	b := p.NewBatch()
	commit := func() {
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		b = p.NewBatch()
	}
	for i := from; i < to; i++ {
		v := make([]byte, 256)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		if err := b.Set(key(i), v, nil); err != nil {
			t.Fatal(err)
		}
		m[string(key(i))] = v
		if (i-from)%5000 == 4999 {
			commit()
		}
	}
	for _, i := range del {
		if err := b.Delete(key(i), nil); err != nil {
			t.Fatal(err)
		}
		delete(m, string(key(i)))
	}
	commit()
}

// snapshot takes a Pebble checkpoint of db, uploads it with u and commits it
// as checkpoint id.
func snapshot(t *testing.T, st storage.Storage, db *state.DB, u *Uploader, id int64) (*Metadata, *UploadResult) {
	t.Helper()
	ctx := context.Background()
	if err := db.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pebble-checkpoint") // must not exist
	if err := db.Pebble().Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	res, err := u.Upload(ctx, id, dir)
	if err != nil {
		t.Fatal(err)
	}
	meta := &Metadata{
		JobID:          e2eJob,
		CheckpointID:   id,
		MaxParallelism: 128,
		Created:        time.Now(),
		TransformNames: map[string]string{"e1": "Count/GroupByKey"},
		Subtasks: []SubtaskState{
			{SubtaskID: e2eSub, KeyGroups: KeyGroupRange{0, 128}, Files: res.Files},
			{SubtaskID: SubtaskID{"source", 0}, SourcePosition: fmt.Appendf(nil, "offset=%d", id)},
		},
	}
	if err := Commit(ctx, st, meta); err != nil {
		t.Fatal(err)
	}
	u.Committed(meta)
	t.Logf("checkpoint %d: %d files, %d bytes; uploaded %d files, %d bytes; reused %d files",
		id, len(res.Files), res.TotalBytes, res.UploadedFiles, res.UploadedBytes, res.ReusedFiles)
	return meta, res
}

// restoreAndCompare restores the subtask of meta into a new directory, opens
// it with ErrorIfNotExists and compares every key with want. It returns the
// directory.
func restoreAndCompare(t *testing.T, st storage.Storage, meta *Metadata, want model) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	if err := Restore(context.Background(), st, meta, e2eSub, dir); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ErrorIfNotExists: true, ReadOnly: true, Logger: testLogger{t}})
	if err != nil {
		t.Fatalf("open restored checkpoint %d: %v", meta.CheckpointID, err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	keys := slices.Sorted(maps.Keys(want))
	i := 0
	for it.First(); it.Valid(); it.Next() {
		if i >= len(keys) || string(it.Key()) != keys[i] {
			t.Fatalf("restored checkpoint %d: key %d is %q, want %q", meta.CheckpointID, i, it.Key(), keys[min(i, len(keys)-1)])
		}
		if !bytes.Equal(it.Value(), want[keys[i]]) {
			t.Fatalf("restored checkpoint %d: value of %q differs", meta.CheckpointID, keys[i])
		}
		i++
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if i != len(keys) {
		t.Fatalf("restored checkpoint %d has %d keys, want %d", meta.CheckpointID, i, len(keys))
	}
	return dir
}

func TestEndToEnd(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { endToEnd(t, open(t)) })
	}
}

func endToEnd(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	db, err := state.Open(state.Options{Dir: filepath.Join(t.TempDir(), "db"), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	u, err := NewUploader(st, e2eJob, e2eSub, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Checkpoint 1 uploads everything.
	m1 := model{}
	write(t, db, m1, rng, 0, numKeys, nil)
	meta1, res1 := snapshot(t, st, db, u, 1)
	if res1.UploadedBytes != res1.TotalBytes || res1.ReusedFiles != 0 {
		t.Fatalf("first checkpoint uploaded %d of %d bytes", res1.UploadedBytes, res1.TotalBytes)
	}

	// Touch 1% of the keys: checkpoint 2 uploads only the new sstables.
	m2 := maps.Clone(m1)
	write(t, db, m2, rng, 20_000, 20_400, []int{30_000, 30_001, 30_002})
	meta2, res2 := snapshot(t, st, db, u, 2)
	if res2.UploadedBytes >= res2.TotalBytes/4 || res2.ReusedFiles == 0 {
		t.Fatalf("incremental checkpoint uploaded %d of %d bytes (%d files reused)", res2.UploadedBytes, res2.TotalBytes, res2.ReusedFiles)
	}
	if got, skipped, err := Latest(ctx, st, e2eJob); err != nil || skipped != nil || got.CheckpointID != 2 {
		t.Fatalf("Latest = %v, skipped %v, err %v; want checkpoint 2", got, skipped, err)
	}
	restoreAndCompare(t, st, meta1, m1)
	restoreAndCompare(t, st, meta2, m2)

	// A corrupt _metadata of checkpoint 2: Latest falls back to 1 and says why.
	name2 := MetadataName(e2eJob, 2)
	good := readAll(t, st, name2)
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 1
	put(t, st, name2, bad)
	got, skipped, err := Latest(ctx, st, e2eJob)
	if err != nil || got.CheckpointID != 1 {
		t.Fatalf("Latest with corrupt checkpoint 2 = %v, %v", got, err)
	}
	if !errors.Is(skipped, ErrCorrupt) || !strings.Contains(skipped.Error(), name2) || !strings.Contains(skipped.Error(), "checksum mismatch") {
		t.Fatalf("skipped = %v, want a checksum mismatch naming %s", skipped, name2)
	}
	put(t, st, name2, good)

	// A deleted sstable: restore fails naming it, Latest falls back.
	sst := onlyIn(meta2, meta1)[0]
	sstObject := e2eJob + "/" + sst.Remote
	sstData := readAll(t, st, sstObject)
	if err := st.Delete(ctx, sstObject); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "restore-missing")
	err = Restore(ctx, st, meta2, e2eSub, dir)
	if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), sstObject) || !strings.Contains(err.Error(), sst.Local) {
		t.Fatalf("Restore with %s deleted: %v", sstObject, err)
	}
	if entries, err := filepath.Glob(filepath.Join(dir, "*")); err != nil || len(entries) != 0 {
		t.Fatalf("failed restore left %v (%v)", entries, err)
	}
	got, skipped, err = Latest(ctx, st, e2eJob)
	if err != nil || got.CheckpointID != 1 || !strings.Contains(fmt.Sprint(skipped), sstObject+" is missing") {
		t.Fatalf("Latest with a missing sstable = %v, skipped %v, err %v", got, skipped, err)
	}

	// The same sstable with one byte changed: restore fails on its hash.
	flipped := bytes.Clone(sstData)
	flipped[len(flipped)/3] ^= 0x80
	put(t, st, sstObject, flipped)
	err = Restore(ctx, st, meta2, e2eSub, filepath.Join(t.TempDir(), "restore-corrupt"))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), sstObject) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("Restore with %s corrupted: %v", sstObject, err)
	}
	put(t, st, sstObject, sstData)

	// Retain(1) removes what only checkpoint 1 used.
	rr, err := Retain(ctx, st, e2eJob, 1)
	if err != nil {
		t.Fatal(err)
	}
	gone := onlyIn(meta1, meta2)
	if !slices.Equal(rr.Retained, []int64{2}) || !slices.Equal(rr.DeletedCheckpoints, []int64{1}) || rr.DeletedShared != len(gone) {
		t.Fatalf("Retain = %+v; want checkpoint 1 and %d shared objects deleted", rr, len(gone))
	}
	for _, f := range gone {
		if _, err := st.Stat(ctx, e2eJob+"/"+f.Remote); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s (only in checkpoint 1) survived Retain: %v", f.Remote, err)
		}
	}
	if left, _ := st.List(ctx, e2eJob+"/chk-1/"); len(left) != 0 {
		t.Errorf("checkpoint 1 objects survived Retain: %q", left)
	}
	if err := checkFilesExist(ctx, st, meta2); err != nil {
		t.Fatalf("Retain broke checkpoint 2: %v", err)
	}
	restored := restoreAndCompare(t, st, meta2, m2)

	// The first incarnation goes on and uploads a checkpoint 3 that is never
	// committed (say the process dies).
	write(t, db, maps.Clone(m2), rng, 10_000, 30_000, nil)
	abortedDir := filepath.Join(t.TempDir(), "aborted")
	if err := db.Pebble().Checkpoint(abortedDir); err != nil {
		t.Fatal(err)
	}
	aborted, err := u.Upload(ctx, 3, abortedDir)
	if err != nil {
		t.Fatal(err)
	}

	// A new incarnation on the restored directory reuses sstable numbers;
	// content naming keeps them apart, and an uploader seeded with the
	// checkpoint it was restored from uploads only what is new.
	db2, err := state.Open(state.Options{Dir: restored, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	u2, err := NewUploader(st, e2eJob, e2eSub, meta2)
	if err != nil {
		t.Fatal(err)
	}
	m3 := maps.Clone(m2)
	write(t, db2, m3, rng, 5_000, 5_400, nil)
	meta3, res3 := snapshot(t, st, db2, u2, 3)
	// Opening and writing compacts some of the restored sstables, which are
	// then new files; the others are reused.
	if res3.UploadedBytes >= res3.TotalBytes || res3.ReusedFiles == 0 {
		t.Fatalf("checkpoint 3 uploaded %d of %d bytes, reused %d files", res3.UploadedBytes, res3.TotalBytes, res3.ReusedFiles)
	}
	reused := 0
	for _, f := range meta3.Subtask(e2eSub).Files {
		if i := slices.IndexFunc(aborted.Files, func(a File) bool { return a.Local == f.Local }); i >= 0 &&
			isShared(f.Local) && aborted.Files[i].SHA256 != f.SHA256 {
			reused++
		}
	}
	if reused == 0 {
		t.Errorf("no sstable number of the aborted checkpoint was reused with other content: the test does not test that")
	}
	restoreAndCompare(t, st, meta3, m3)
	restoreAndCompare(t, st, meta2, m2)
}

// onlyIn returns the shared files of a's subtask that b's does not have.
func onlyIn(a, b *Metadata) []File {
	inB := map[string]bool{}
	for _, f := range b.Subtask(e2eSub).Files {
		inB[f.Remote] = true
	}
	var out []File
	for _, f := range a.Subtask(e2eSub).Files {
		if !inB[f.Remote] && strings.HasPrefix(f.Remote, sharedDir) {
			out = append(out, f)
		}
	}
	return out
}

func readAll(t *testing.T, st storage.Storage, name string) []byte {
	t.Helper()
	data, err := readObject(context.Background(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func put(t *testing.T, st storage.Storage, name string, data []byte) {
	t.Helper()
	if err := st.Put(context.Background(), name, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testLogger keeps Pebble quiet and turns its fatal errors into test errors
// instead of exiting.
type testLogger struct{ t *testing.T }

func (testLogger) Infof(string, ...any)           {}
func (l testLogger) Errorf(f string, args ...any) { l.t.Logf("pebble: "+f, args...) }
func (l testLogger) Fatalf(f string, args ...any) { l.t.Errorf("pebble fatal: "+f, args...) }
