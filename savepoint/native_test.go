package savepoint

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeNative writes a native savepoint of two subtasks of stage "count"
// (the sample's declarations and sources) and returns its metadata.
func writeNative(t *testing.T, w *Writer, files map[int]map[string]string) *Metadata {
	t.Helper()
	ctx := t.Context()
	pf, err := w.Pipeline(ctx, samplePipeline)
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMetadata()
	m.Pipeline, m.Type = pf, Native
	for sub := range 2 {
		d := NativeDB{Stage: "count", Subtask: sub, Keys: KeyGroupRange{Start: sub * 4, End: sub*4 + 4},
			Transforms: map[string]string{"count/Stateful": "e3"}, SideInputs: []string{"count/Join/totals"}}
		for _, local := range []string{"000004.sst", "MANIFEST-000001"} {
			f, err := w.NativeFile(ctx, "count", sub, local, strings.NewReader(files[sub][local]))
			if err != nil {
				t.Fatal(err)
			}
			d.Files = append(d.Files, f)
		}
		m.Native = append(m.Native, d)
	}
	m.Sources[0].Files = append(m.Sources[0].Files, writeFile(t, w, SectionSources, "read/Source", nil, newSample().residual[0]))
	return m
}

// TestNativeRoundTrip: a native savepoint's files are stored under the
// paths the metadata lists, with their figures; it opens, verifies, and
// reads back as written; its metadata is version 2.
func TestNativeRoundTrip(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	files := map[int]map[string]string{0: {"000004.sst": "sst of 0", "MANIFEST-000001": "manifest 0"}, 1: {"000004.sst": "sst of 1", "MANIFEST-000001": ""}}
	w, err := Create(t.Context(), st, "count", "7")
	if err != nil {
		t.Fatal(err)
	}
	m := writeNative(t, w, files)
	if err := w.Commit(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	sp, err := Open(t.Context(), st, w.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := sp.Metadata()
	if !got.IsNative() || !reflect.DeepEqual(got.Native, canonicalNative(m.Native)) {
		t.Fatalf("native DBs read back as %+v, want %+v", got.Native, m.Native)
	}
	for _, d := range got.Native {
		for _, f := range d.Files {
			b, err := os.ReadFile(filepath.Join(root, w.Dir(), f.Path))
			if err != nil || string(b) != files[d.Subtask][f.Local] {
				t.Errorf("%s: %q, %v; want %q", f.Path, b, err, files[d.Subtask][f.Local])
			}
		}
	}
	meta, err := os.ReadFile(filepath.Join(root, w.Dir(), MetadataBase))
	if err != nil || !bytes.Contains(meta, []byte(`"version":2`)) {
		t.Fatalf("metadata %s (%v): want version 2", meta, err)
	}

	// A damaged native file fails Verify, naming it.
	bad := got.Native[1].Files[0]
	if err := os.WriteFile(filepath.Join(root, w.Dir(), bad.Path), []byte("sst of 9"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sp.Verify(t.Context()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bad.Path) {
		t.Fatalf("Verify of a damaged native file = %v, want ErrCorrupt naming %s", err, bad.Path)
	}
}

// TestNativeCommitRefuses: a native file written but not listed, listed
// with other figures, or keyed data files in a native savepoint are
// refused at Commit.
func TestNativeCommitRefuses(t *testing.T) {
	files := map[int]map[string]string{0: {"000004.sst": "a", "MANIFEST-000001": "b"}, 1: {"000004.sst": "c", "MANIFEST-000001": "d"}}
	for _, tc := range []struct {
		name   string
		change func(m *Metadata)
		want   string
	}{
		{"unlisted", func(m *Metadata) { m.Native[1].Files = m.Native[1].Files[:1] }, "are listed"},
		{"other size", func(m *Metadata) { m.Native[0].Files[0].Size++ }, "was not written so"},
		{"overlapping key groups", func(m *Metadata) { m.Native[1].Keys.Start = 3 }, "overlap"},
		{"local name", func(m *Metadata) { m.Native[0].Files[0].Local = "../x" }, "local name"},
		{"keyed files", func(m *Metadata) {
			m.Transforms[0].Files = []File{{Path: "t1.rec", Size: 100, SHA256: strings.Repeat("ab", 32), KeyGroups: &KeyGroupRange{0, 4}}}
		}, "data files in a native savepoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Create(t.Context(), fileStore(t, t.TempDir()), "count", "7")
			if err != nil {
				t.Fatal(err)
			}
			m := writeNative(t, w, files)
			m.Job, m.ID = "count", "7"
			tc.change(m)
			err = w.Commit(t.Context(), m)
			if tc.name == "keyed files" {
				_, err = EncodeMetadata(m) // Commit refuses the unwritten file first
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Commit = %v, want %q", err, tc.want)
			}
		})
	}
}
