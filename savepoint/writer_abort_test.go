package savepoint

import (
	"context"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// TestAbort: an aborted savepoint's files are deleted, and only its own:
// another file in the store stays; it cannot be committed after; Abort
// after Commit deletes nothing.
func TestAbort(t *testing.T) {
	ctx := context.Background()
	st, err := storage.NewFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.PutIfAbsent(ctx, "other/keep", []byte("x")); err != nil {
		t.Fatal(err)
	}
	w, err := Create(ctx, st, "job", "a1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(ctx, []byte("pipeline")); err != nil {
		t.Fatal(err)
	}
	rw, err := w.File(ctx, SectionSources, "src", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.Write(&ResidualRecord{Restriction: []byte("r")}); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if names, err := st.List(ctx, w.Dir()+"/"); err != nil || len(names) != 0 {
		t.Fatalf("after Abort %s holds %v (%v), want nothing", w.Dir(), names, err)
	}
	if names, err := st.List(ctx, "other/"); err != nil || len(names) != 1 {
		t.Fatalf("Abort touched another file: %v (%v)", names, err)
	}
	if err := w.Commit(ctx, &Metadata{}); err == nil || !strings.Contains(err.Error(), "aborted") {
		t.Fatalf("Commit after Abort: %v, want refused as aborted", err)
	}
}
