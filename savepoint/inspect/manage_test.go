package inspect_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
	"github.com/weir-runner/weir/savepoint/inspect/inspecttest"
)

func TestVerifyNamesCorruptFile(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	dir := inspecttest.Write(t, st)
	r, err := inspect.Open(t.Context(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	data := r.Metadata().Groups[0].Files[0].Path
	p := filepath.Join(root, dir, data)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.Verify(t.Context())
	if !errors.Is(err, savepoint.ErrCorrupt) || !strings.Contains(err.Error(), dir+"/"+data) {
		t.Errorf("Verify of a damaged %s: %v; want ErrCorrupt naming the file", data, err)
	}

	// A pipeline that is not a Beam pipeline proto, with a matching
	// checksum, cannot come from weir: Open refuses it naming pipeline.pb.
	if err := os.WriteFile(filepath.Join(root, dir, savepoint.PipelineBase), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := inspect.Open(t.Context(), st, dir); !errors.Is(err, savepoint.ErrCorrupt) || !strings.Contains(err.Error(), savepoint.PipelineBase) {
		t.Errorf("Open with a damaged pipeline: %v; want ErrCorrupt naming %s", err, savepoint.PipelineBase)
	}
}

func TestList(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	inspecttest.WriteJob(t, st, "cards", "a", t0)
	inspecttest.WriteJob(t, st, "cards", "b", t0.Add(time.Hour))
	inspecttest.WriteJob(t, st, "other", "x1", t0.Add(time.Minute))
	// An attempt that never committed, and a directory that is no savepoint's.
	w, err := savepoint.Create(t.Context(), st, "cards", "failed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(t.Context(), []byte("p")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "cards", "chk-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "cards", "chk-1", "_metadata"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := inspect.List(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range l.Savepoints {
		got = append(got, s.Job+"/"+s.ID)
		if s.Files != 4 || s.Records != 14 || len(s.Transforms) != 1 || s.MaxParallelism != 8 || s.Parallelism != 2 || s.Size <= 0 {
			t.Errorf("summary %+v", s)
		}
	}
	if want := []string{"cards/b", "other/x1", "cards/a"}; !slices.Equal(got, want) {
		t.Errorf("savepoints %v, want %v (newest first)", got, want)
	}
	if len(l.Incomplete) != 1 || l.Incomplete[0].URL != st.String()+"/savepoint-cards-failed" || l.Incomplete[0].Files != 1 {
		t.Errorf("incomplete %+v, want savepoint-cards-failed with 1 file", l.Incomplete)
	}
	if len(l.Unreadable) != 0 {
		t.Errorf("unreadable %v", l.Unreadable)
	}
}

func TestDispose(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	dir := inspecttest.Write(t, st)
	other := inspecttest.WriteJob(t, st, "cards", "sp2", time.Now())
	stray := filepath.Join(root, dir, "notes.txt")
	if err := os.WriteFile(stray, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Not savepoints: refused, nothing deleted.
	for _, bad := range []string{"", "savepoint-cards-nope", "savepoint-cards-failed"} {
		if bad == "savepoint-cards-failed" {
			w, err := savepoint.Create(t.Context(), st, "cards", "failed")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Pipeline(t.Context(), []byte("p")); err != nil {
				t.Fatal(err)
			}
		}
		if n, _, err := inspect.Dispose(t.Context(), st, bad); err == nil || n != 0 {
			t.Errorf("Dispose(%q) = %d, %v; want a refusal", bad, n, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "savepoint-cards-failed", savepoint.PipelineBase)); err != nil {
		t.Errorf("a refused dispose deleted a file: %v", err)
	}

	n, left, err := inspect.Dispose(t.Context(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 || len(left) != 1 || left[0] != dir+"/notes.txt" {
		t.Errorf("Dispose = %d deleted, left %v; want 6 and %s/notes.txt", n, left, dir)
	}
	names, err := st.List(t.Context(), dir+"/")
	if err != nil || !slices.Equal(names, []string{dir + "/notes.txt"}) {
		t.Errorf("after dispose %s holds %v (%v)", dir, names, err)
	}
	if _, err := savepoint.Open(t.Context(), st, other); err != nil {
		t.Errorf("the other savepoint: %v", err)
	}
	if _, _, err := inspect.Dispose(t.Context(), st, dir); err == nil {
		t.Error("a second Dispose succeeded")
	}
}

// TestDisposeMetadataFirst: a dispose cut short after its first delete
// leaves no savepoint.
func TestDisposeMetadataFirst(t *testing.T) {
	st := fileStore(t, t.TempDir())
	dir := inspecttest.Write(t, st)
	failing := &failAfter{Storage: st, n: 1}
	if _, _, err := inspect.Dispose(t.Context(), failing, dir); err == nil {
		t.Fatal("Dispose with a failing store succeeded")
	}
	if failing.deleted[0] != dir+"/"+savepoint.MetadataBase {
		t.Errorf("deleted %v first, want _metadata", failing.deleted)
	}
	if _, err := savepoint.Open(t.Context(), st, dir); err == nil {
		t.Error("a half-disposed savepoint still opens")
	}
}

// failAfter is a store whose deletes fail after the first n.
type failAfter struct {
	storage.Storage
	n       int
	deleted []string
}

func (f *failAfter) Delete(ctx context.Context, name string) error {
	if len(f.deleted) == f.n {
		return errors.New("store down")
	}
	f.deleted = append(f.deleted, name)
	return f.Storage.Delete(ctx, name)
}
