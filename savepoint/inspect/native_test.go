package inspect_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
	"github.com/weir-runner/weir/savepoint/inspect/inspecttest"
	"google.golang.org/protobuf/proto"
)

// writeNative writes a native savepoint of the sample's declarations: one
// subtask's Pebble files (two, of made-up bytes) and the sample's source.
func writeNative(t *testing.T, st storage.Storage) string {
	t.Helper()
	ctx := context.Background()
	w, err := savepoint.Create(ctx, st, "cards", "nat1")
	if err != nil {
		t.Fatal(err)
	}
	pb, err := proto.Marshal(inspecttest.Pipeline(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(ctx, pb); err != nil {
		t.Fatal(err)
	}
	m := inspecttest.Metadata()
	m.Type = savepoint.Native
	d := savepoint.NativeDB{Stage: "count/Stateful", Keys: savepoint.KeyGroupRange{Start: 0, End: 8}, Transforms: map[string]string{"count/Stateful": "e2"}}
	for _, local := range []string{"000005.sst", "MANIFEST-000001"} {
		f, err := w.NativeFile(ctx, d.Stage, 0, local, strings.NewReader("bytes of "+local))
		if err != nil {
			t.Fatal(err)
		}
		d.Files = append(d.Files, f)
	}
	m.Native = []savepoint.NativeDB{d}
	rw, err := w.File(ctx, savepoint.SectionSources, "read/Source", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inspecttest.Records(t)[savepoint.SectionSources] {
		if err := rw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	f, err := rw.Close()
	if err != nil {
		t.Fatal(err)
	}
	m.Sources[0].Files = []savepoint.File{f}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return w.Dir()
}

// TestNative: a native savepoint is listed with its type and the size of
// its Pebble files; inspect shows its sources but refuses its state,
// naming the fix; dispose deletes its Pebble files too.
func TestNative(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	dir := writeNative(t, st)
	l, err := inspect.List(t.Context(), st)
	if err != nil || len(l.Savepoints) != 1 {
		t.Fatalf("List = %+v, %v", l, err)
	}
	if s := l.Savepoints[0]; s.Type != savepoint.Native || s.Files != 3 {
		t.Errorf("summary type %q, %d files; want native, 3 (a source file, two Pebble files)", s.Type, s.Files)
	}
	r, err := inspect.Open(t.Context(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, err := range r.Entries(t.Context(), inspect.Filter{}) {
		if err == nil || !strings.Contains(err.Error(), "is native") || !strings.Contains(err.Error(), "--type=canonical") {
			t.Fatalf("Entries of a native savepoint: %v; want a refusal naming the fix", err)
		}
	}
	n := 0
	for e, err := range r.Entries(t.Context(), inspect.Filter{Transform: "read/Source"}) {
		if err != nil || e == nil {
			t.Fatalf("the source's entries: %v, %v", e, err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("%d source entries, want 1", n)
	}
	deleted, left, err := inspect.Dispose(t.Context(), st, dir)
	if err != nil || deleted != 5 || len(left) != 0 {
		t.Errorf("Dispose = %d deleted, left %v, %v; want 5, none", deleted, left, err)
	}
	if _, err := os.Stat(filepath.Join(root, dir, "native")); err == nil {
		if entries, _ := os.ReadDir(filepath.Join(root, dir, "native", "1", "0")); len(entries) > 0 {
			t.Errorf("native files left after dispose: %v", entries)
		}
	}
}
