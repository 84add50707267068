package checkpoint

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

const job = "job-unit"

var sub = SubtaskID{Stage: "stage.with/odd-chars", Subtask: 3}

// fakeCheckpoint writes a directory that looks like a Pebble checkpoint.
func fakeCheckpoint(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "chk")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func metaFor(id int64, res *UploadResult) *Metadata {
	return &Metadata{
		JobID: job, CheckpointID: id, MaxParallelism: 8, Created: time.Unix(int64(id), 0).UTC(),
		Subtasks: []SubtaskState{{SubtaskID: sub, KeyGroups: KeyGroupRange{0, 8}, Files: res.Files}},
	}
}

func upload(t *testing.T, u *Uploader, id int64, files map[string]string) *UploadResult {
	t.Helper()
	res, err := u.Upload(context.Background(), id, fakeCheckpoint(t, files))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func commit(t *testing.T, st storage.Storage, u *Uploader, meta *Metadata) {
	t.Helper()
	if err := Commit(context.Background(), st, meta); err != nil {
		t.Fatal(err)
	}
	u.Committed(meta)
}

func TestCatalog(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			t.Run("commit", func(t *testing.T) { testCommit(t, open(t)) })
			t.Run("latest", func(t *testing.T) { testLatest(t, open(t)) })
			t.Run("retain", func(t *testing.T) { testRetain(t, open(t)) })
			t.Run("uploader", func(t *testing.T) { testUploader(t, open(t)) })
			t.Run("restore", func(t *testing.T) { testRestore(t, open(t)) })
		})
	}
}

func testCommit(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	u, _ := NewUploader(st, job, sub, nil)
	meta := metaFor(1, upload(t, u, 1, map[string]string{"000001.sst": "a", "MANIFEST-000001": "m"}))
	if err := Commit(ctx, st, meta); err != nil {
		t.Fatal(err)
	}
	if err := Commit(ctx, st, meta); err != nil {
		t.Fatalf("retried commit of the same metadata: %v", err)
	}
	other := *meta
	other.Created = other.Created.Add(time.Second)
	err := Commit(ctx, st, &other)
	if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), MetadataName(job, 1)) {
		t.Fatalf("conflicting commit: %v, want ErrExists naming %s", err, MetadataName(job, 1))
	}
	bad := *meta
	bad.JobID = "a/b"
	if err := Commit(ctx, st, &bad); err == nil {
		t.Fatal("commit of invalid metadata succeeded")
	}
}

func testLatest(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	if _, _, err := Latest(ctx, st, job); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Latest of nothing: %v", err)
	}
	u, _ := NewUploader(st, job, sub, nil)
	m1 := metaFor(1, upload(t, u, 1, map[string]string{"000001.sst": "a"}))
	upload(t, u, 2, map[string]string{"000002.sst": "b"}) // never committed
	if _, _, err := Latest(ctx, st, job); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("Latest with only uncommitted checkpoints: %v", err)
	}
	commit(t, st, u, m1)
	if m, skipped, err := Latest(ctx, st, job); err != nil || skipped != nil || m.CheckpointID != 1 {
		t.Fatalf("Latest = %v, %v, %v", m, skipped, err)
	}

	// Checkpoint 1's metadata copied to chk-3: foreign, skipped.
	data := readAll(t, st, MetadataName(job, 1))
	put(t, st, MetadataName(job, 3), data)
	m, skipped, err := Latest(ctx, st, job)
	if err != nil || m.CheckpointID != 1 || !errors.Is(skipped, ErrForeign) || !strings.Contains(skipped.Error(), MetadataName(job, 3)) {
		t.Fatalf("Latest with a copied metadata = %v, skipped %v, err %v", m, skipped, err)
	}

	// A newer format at the top stops the search: no silent fallback.
	body, _ := unseal(mustEncode(t, metaFor(4, &UploadResult{})))
	put(t, st, MetadataName(job, 4), seal([]byte(strings.Replace(strings.TrimSpace(string(body)), thisVersion, `"version":99`, 1))))
	if _, _, err := Latest(ctx, st, job); !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), MetadataName(job, 4)) {
		t.Fatalf("Latest with a newer format on top: %v", err)
	}
	if _, err := Retain(ctx, st, job, 1); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("Retain with a newer format on top: %v", err)
	}
	if _, err := st.Stat(ctx, MetadataName(job, 1)); err != nil {
		t.Fatalf("failed Retain deleted something: %v", err)
	}
}

func testRetain(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	u, _ := NewUploader(st, job, sub, nil)
	m1 := metaFor(1, upload(t, u, 1, map[string]string{"000001.sst": "a", "MANIFEST-000001": "m1"}))
	commit(t, st, u, m1)
	r2 := upload(t, u, 2, map[string]string{"000001.sst": "a", "000002.sst": "b", "MANIFEST-000001": "m2"})
	if r2.ReusedFiles != 1 || r2.UploadedFiles != 2 {
		t.Fatalf("checkpoint 2: %+v, want a.sst reused", r2)
	}
	m2 := metaFor(2, r2)
	commit(t, st, u, m2)
	// Checkpoint 3 is still uploading (its intent is written, not its
	// metadata); checkpoint 4 has corrupt metadata.
	r3 := upload(t, u, 3, map[string]string{"000003.sst": "c", "MANIFEST-000001": "m3"})
	put(t, st, MetadataName(job, 4), []byte("garbage\n"))
	put(t, st, job+"/shared/"+strings.Repeat("0", 64)+".sst", []byte("stray"))

	if _, err := Retain(ctx, st, job, 0); err == nil {
		t.Fatal("Retain(0) succeeded")
	}
	res, err := Retain(ctx, st, job, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Retained, []int64{2}) || !slices.Equal(res.DeletedCheckpoints, []int64{1, 4}) ||
		res.DeletedShared != 1 || len(res.Unreadable) != 1 || !errors.Is(res.Unreadable[0], ErrCorrupt) {
		t.Fatalf("Retain = %+v", res)
	}
	names, _ := st.List(ctx, job+"/")
	var want []string
	for _, f := range append(m2.Subtasks[0].Files, r3.Files...) {
		want = append(want, job+"/"+f.Remote)
	}
	want = append(want, MetadataName(job, 2), job+"/"+subtaskPrefix(2, sub)+intentBase, job+"/"+subtaskPrefix(3, sub)+intentBase)
	slices.Sort(want)
	want = slices.Compact(want)
	if !slices.Equal(names, want) {
		t.Fatalf("after Retain:\n got %q\nwant %q", names, want)
	}
	if res, err := Retain(ctx, st, job, 1); err != nil || len(res.DeletedCheckpoints) != 0 || res.DeletedShared != 0 {
		t.Fatalf("second Retain = %+v, %v; want nothing to do", res, err)
	}

	// Once checkpoint 3 commits and is the one retained, checkpoint 2 and
	// the sstables only it had (a and b) go.
	commit(t, st, u, metaFor(3, r3))
	if res, err := Retain(ctx, st, job, 1); err != nil || !slices.Equal(res.DeletedCheckpoints, []int64{2}) || res.DeletedShared != 2 {
		t.Fatalf("Retain after checkpoint 3 = %+v, %v", res, err)
	}
	if m, _, err := Latest(ctx, st, job); err != nil || m.CheckpointID != 3 {
		t.Fatalf("Latest after Retain = %v, %v", m, err)
	}
}

func testUploader(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	if _, err := NewUploader(st, job, sub, &Metadata{JobID: "other"}); !errors.Is(err, ErrForeign) {
		t.Fatalf("NewUploader with another job's base: %v", err)
	}
	if _, err := NewUploader(st, "a/b", sub, nil); err == nil {
		t.Fatal("NewUploader with an invalid job ID succeeded")
	}
	u, _ := NewUploader(st, job, sub, nil)
	// Two files with one content are stored once.
	res := upload(t, u, 1, map[string]string{"000001.sst": "same", "000002.sst": "same", "OPTIONS-000003": "o"})
	if res.UploadedFiles != 2 || res.ReusedFiles != 1 || res.TotalBytes != 9 || res.UploadedBytes != 5 {
		t.Fatalf("Upload = %+v", res)
	}
	if res.Files[0].Remote != res.Files[1].Remote || !strings.HasPrefix(res.Files[0].Remote, "shared/") {
		t.Fatalf("files %+v", res.Files)
	}
	if got, want := res.Files[2].Remote, "chk-1/stage%2Ewith%2Fodd%2Dchars-3/OPTIONS-000003"; got != want {
		t.Fatalf("remote of OPTIONS = %q, want %q", got, want)
	}
	// Not committed: a second checkpoint uploads the files again.
	if res := upload(t, u, 2, map[string]string{"000001.sst": "same"}); res.UploadedFiles != 1 {
		t.Fatalf("uncommitted files were taken as uploaded: %+v", res)
	}
	dir := fakeCheckpoint(t, map[string]string{"000001.sst": "x"})
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Upload(ctx, 3, dir); err == nil || !strings.Contains(err.Error(), "sub is not a regular file") {
		t.Fatalf("Upload of a directory with a subdirectory: %v", err)
	}
	if _, err := u.Upload(ctx, 3, filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Upload of a missing directory: %v", err)
	}

	// Concurrent uploads by one uploader (run with -race).
	var wg sync.WaitGroup
	for id := int64(10); id < 14; id++ {
		wg.Go(func() {
			d := fakeCheckpoint(t, map[string]string{"000001.sst": "same", "000009.sst": string(rune('a' + id))})
			if _, err := u.Upload(ctx, id, d); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func testRestore(t *testing.T, st storage.Storage) {
	ctx := context.Background()
	u, _ := NewUploader(st, job, sub, nil)
	files := map[string]string{"000001.sst": "a", "MANIFEST-000001": "m", "marker.manifest.000001.MANIFEST-000001": ""}
	meta := metaFor(1, upload(t, u, 1, files))
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := Restore(ctx, st, meta, sub, dir); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != content {
			t.Fatalf("restored %s = %q, %v", name, got, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != len(files) {
		t.Fatalf("restored directory has %d entries, want %d", len(entries), len(files))
	}
	if err := Restore(ctx, st, meta, sub, dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Restore into a non-empty directory: %v", err)
	}
	if err := Restore(ctx, st, meta, SubtaskID{"nope", 0}, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no such subtask") {
		t.Fatalf("Restore of an unknown subtask: %v", err)
	}
	evil := *meta
	evil.Subtasks = slices.Clone(meta.Subtasks)
	evil.Subtasks[0].Files = []File{{Local: "../escape", Remote: meta.Subtasks[0].Files[0].Remote, SHA256: sum0}}
	if err := Restore(ctx, st, &evil, sub, filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "not a plain file name") {
		t.Fatalf("Restore of a path escaping the directory: %v", err)
	}
	// A short object: size mismatch, named.
	obj := job + "/" + meta.Subtasks[0].Files[1].Remote // MANIFEST (files sorted by name)
	put(t, st, obj, []byte("mm"))
	err := Restore(ctx, st, meta, sub, filepath.Join(t.TempDir(), "y"))
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), obj) || !strings.Contains(err.Error(), "2 bytes, metadata says 1") {
		t.Fatalf("Restore of a wrong-size object: %v", err)
	}
}

// hookStorage runs after(prefix) once a List returns.
type hookStorage struct {
	storage.Storage
	after func(prefix string)
}

func (h *hookStorage) List(ctx context.Context, prefix string) ([]string, error) {
	names, err := h.Storage.List(ctx, prefix)
	if h.after != nil {
		h.after(prefix)
	}
	return names, err
}

// TestRetainConcurrentUpload runs a whole upload between Retain's listings
// (after shared/, then after chk-): nothing it refers to may be deleted, even
// content that an aborted checkpoint, collected by this Retain, had too.
func TestRetainConcurrentUpload(t *testing.T) {
	for _, between := range []string{sharedDir, chkPrefix} {
		for name, open := range stores() {
			t.Run(strings.TrimSuffix(between, "/")+"/"+name, func(t *testing.T) {
				ctx := context.Background()
				st := &hookStorage{Storage: open(t)}
				u, _ := NewUploader(st, job, sub, nil)
				commit(t, st, u, metaFor(1, upload(t, u, 1, map[string]string{"000001.sst": "a"})))
				upload(t, u, 2, map[string]string{"000001.sst": "a", "000002.sst": "z"}) // aborted
				commit(t, st, u, metaFor(3, upload(t, u, 3, map[string]string{"000001.sst": "a", "000003.sst": "b"})))

				var res4 *UploadResult
				st.after = func(prefix string) {
					if prefix == job+"/"+between {
						st.after = nil
						res4 = upload(t, u, 4, map[string]string{"000001.sst": "a", "000002.sst": "z", "000004.sst": "c"})
					}
				}
				rr, err := Retain(ctx, st, job, 1)
				if err != nil {
					t.Fatal(err)
				}
				if res4 == nil {
					t.Fatal("the hook did not run")
				}
				if !slices.Equal(rr.DeletedCheckpoints, []int64{1, 2}) || rr.DeletedShared != 1 {
					t.Fatalf("Retain = %+v, want checkpoints 1, 2 and the aborted z deleted", rr)
				}
				if err := checkFilesExist(ctx, st, metaFor(4, res4)); err != nil {
					t.Fatalf("Retain deleted a file of the concurrent upload: %v", err)
				}
			})
		}
	}
}
