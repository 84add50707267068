package savepoint

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// sample is a savepoint's content: the records of each file by owner.
type sample struct {
	state    map[KeyGroupRange][]Record // transform "count/Stateful"
	groups   map[KeyGroupRange][]Record // GroupByKey "count/GBK"
	side     []Record                   // side inputs of "count/Join"
	residual [][]Record                 // source "read/Source": two files
}

func newSample() sample {
	return sample{
		state: map[KeyGroupRange][]Record{
			{0, 4}: {
				&StateRecord{KeyGroup: 0, Key: []byte("k0"), Window: []byte{0x7f, 0xff}, StateID: "count", Value: []byte{1}},
				&StateRecord{KeyGroup: 1, Key: []byte("k1"), Window: []byte("w"), StateID: "bag", Value: []byte("a")},
				&StateRecord{KeyGroup: 1, Key: []byte("k1"), Window: []byte("w"), StateID: "bag", Value: []byte("b")},
				&StateRecord{KeyGroup: 1, Key: []byte("k1"), Window: []byte("w"), StateID: "sum", Value: []byte{0, 0, 9}},
				&TimerRecord{KeyGroup: 1, Key: []byte("k1"), Window: []byte("w"), Family: "flush", Tag: []byte("t"), Domain: EventTime, Fire: 1000, Hold: 999, Pane: []byte{0x0f}},
				&StateRecord{KeyGroup: 3, Key: []byte("k3"), Window: []byte("w"), StateID: "seen", UserKey: []byte("m1"), Value: []byte("v1")},
				&StateRecord{KeyGroup: 3, Key: []byte("k3"), Window: []byte("w"), StateID: "set", UserKey: []byte("e1")},
				&StateRecord{KeyGroup: 3, Key: []byte("k3"), Window: []byte("w"), StateID: "list", SortKey: -9223372036854775, Value: []byte("x")},
				&TimerRecord{KeyGroup: 3, Key: []byte("k3"), Window: []byte("w"), Family: "gc", Domain: ProcessingTime, Fire: -5, Hold: NoHoldForTest},
			},
			{4, 8}: {}, // an empty file
		},
		groups: map[KeyGroupRange][]Record{
			{2, 8}: {
				&GroupValueRecord{KeyGroup: 2, Key: []byte("k"), Window: []byte("w"), Timestamp: 5, Value: []byte("v")},
				&TriggerRecord{KeyGroup: 2, Key: []byte("k"), Window: []byte("w"), State: []byte{1, 2, 3}},
				&GroupValueRecord{KeyGroup: 7, Key: []byte("k7"), Window: nil, Timestamp: -1, Value: nil},
			},
		},
		side: []Record{
			&SideInputRecord{SideInput: "totals", Window: []byte("w"), Values: []byte("123")},
			&SideInputRecord{SideInput: "lookup", Window: []byte("w"), Key: []byte("k"), Values: []byte("v")},
			&ParkedRecord{Need: 60000, MinTimestamp: 100, Elements: []byte("elements")},
		},
		residual: [][]Record{
			{&ResidualRecord{Restriction: []byte("offset 10-20"), Watermark: 42}},
			{&ResidualRecord{Restriction: []byte("offset 30-"), Watermark: -9223372036854775}},
		},
	}
}

// NoHoldForTest is Beam's maximum timestamp (state.NoHold).
const NoHoldForTest = 9223372036854775807 / 1000

// sampleMetadata is the metadata of sample without files.
func sampleMetadata() *Metadata {
	return &Metadata{
		Created:        time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC),
		MaxParallelism: 8,
		Parallelism:    2,
		Transforms: []Transform{{
			UniqueName: "count/Stateful",
			DoFn:       "beam:go:transform:dofn:v1 sha256:00ff",
			States: []StateSpec{
				{ID: "count", Kind: KindValue, KeyCoder: "c1", WindowCoder: "c2", ValueCoder: "c3"},
				{ID: "bag", Kind: KindBag, KeyCoder: "c1", WindowCoder: "c2", ValueCoder: "c3"},
				{ID: "sum", Kind: KindCombining, KeyCoder: "c1", WindowCoder: "c2", ValueCoder: "c4"},
				{ID: "seen", Kind: KindMap, KeyCoder: "c1", WindowCoder: "c2", ValueCoder: "c3", UserKeyCoder: "c5"},
				{ID: "set", Kind: KindSet, KeyCoder: "c1", WindowCoder: "c2", UserKeyCoder: "c5"},
				{ID: "list", Kind: KindOrderedList, KeyCoder: "c1", WindowCoder: "c2", ValueCoder: "c3"},
			},
			Timers: []TimerFamily{
				{ID: "flush", Domain: EventTime, KeyCoder: "c1", WindowCoder: "c2"},
				{ID: "gc", Domain: ProcessingTime, KeyCoder: "c1", WindowCoder: "c2"},
			},
		}},
		Groups: []Group{{UniqueName: "count/GBK", KeyCoder: "c1", ValueCoder: "c3", WindowCoder: "c2"}},
		SideInputs: []SideInputs{{
			UniqueName: "count/Join",
			Inputs: []SideInputSpec{
				{ID: "totals", Kind: SideIterable, ValueCoder: "c3", WindowCoder: "c2"},
				{ID: "lookup", Kind: SideMultimap, KeyCoder: "c1", ValueCoder: "c3", WindowCoder: "c2"},
			},
			InputCoder: "c6",
		}},
		Sources:       []Source{{UniqueName: "read/Source", RestrictionCoder: "c7"}},
		FiredImpulses: []string{"read/Impulse", "side/Impulse"},
	}
}

var samplePipeline = []byte("\x0a\x03pipeline proto bytes")

func fileStore(t testing.TB, dir string) storage.Storage {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func writeFile(t *testing.T, w *Writer, sec Section, owner string, kgs *KeyGroupRange, recs []Record) File {
	t.Helper()
	rw, err := w.File(t.Context(), sec, owner, kgs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := rw.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	f, err := rw.Close()
	if err != nil {
		t.Fatal(err)
	}
	if f.Records != int64(len(recs)) || f.Path != rw.Path() {
		t.Fatalf("Close = %+v for %d records at %s", f, len(recs), rw.Path())
	}
	return f
}

// writeSample writes the sample as savepoint "7" of job "count" in st and
// returns its metadata as committed.
func writeSample(t *testing.T, st storage.Storage, s sample) *Metadata {
	t.Helper()
	ctx := t.Context()
	w, err := Create(ctx, st, "count", "7")
	if err != nil {
		t.Fatal(err)
	}
	pf, err := w.Pipeline(ctx, samplePipeline)
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMetadata()
	m.Pipeline = pf
	for kgs, recs := range s.state {
		m.Transforms[0].Files = append(m.Transforms[0].Files, writeFile(t, w, SectionTransforms, "count/Stateful", &kgs, recs))
	}
	for kgs, recs := range s.groups {
		m.Groups[0].Files = append(m.Groups[0].Files, writeFile(t, w, SectionGroups, "count/GBK", &kgs, recs))
	}
	m.SideInputs[0].Files = append(m.SideInputs[0].Files, writeFile(t, w, SectionSideInputs, "count/Join", nil, s.side))
	for _, recs := range s.residual {
		m.Sources[0].Files = append(m.Sources[0].Files, writeFile(t, w, SectionSources, "read/Source", nil, recs))
	}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// openSample writes the sample in a new directory and opens it: the
// directory, its store and the savepoint.
func openSample(t *testing.T) (string, storage.Storage, *Savepoint) {
	t.Helper()
	root := t.TempDir()
	st := fileStore(t, root)
	writeSample(t, st, newSample())
	sp, err := Open(t.Context(), st, "savepoint-count-7")
	if err != nil {
		t.Fatal(err)
	}
	return root, st, sp
}

func readRecords(t *testing.T, sp *Savepoint, path string) ([]Record, error) {
	t.Helper()
	r, err := sp.Records(t.Context(), path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var recs []Record
	for r.Next() {
		recs = append(recs, r.Record())
	}
	return recs, r.Err()
}

// checkSample opens the savepoint in dir of st and compares it with s.
func checkSample(t *testing.T, st storage.Storage, dir string, s sample) {
	t.Helper()
	sp, err := Open(t.Context(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	m := sp.Metadata()
	if m.Job != "count" || m.ID != "7" || m.MaxParallelism != 8 || m.Parallelism != 2 || !m.Created.Equal(sampleMetadata().Created) {
		t.Errorf("metadata %+v", m)
	}
	if got, want := m.FiredImpulses, []string{"read/Impulse", "side/Impulse"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fired impulses %q, want %q", got, want)
	}
	p, err := sp.Pipeline(t.Context())
	if err != nil || string(p) != string(samplePipeline) {
		t.Errorf("Pipeline = %q, %v", p, err)
	}
	check := func(f File, want []Record) {
		t.Helper()
		got, err := readRecords(t, sp, f.Path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Errorf("%s: read %d records, wrote %d", f.Path, len(got), len(want))
			for i := range max(len(got), len(want)) {
				if i >= len(got) || i >= len(want) || !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("record %d: read %+v, wrote %+v", i, at(got, i), at(want, i))
				}
			}
		}
	}
	if n := len(m.Transforms[0].Files); n != len(s.state) {
		t.Fatalf("%d transform files", n)
	}
	for _, f := range m.Transforms[0].Files {
		check(f, s.state[*f.KeyGroups])
	}
	for _, f := range m.Groups[0].Files {
		check(f, s.groups[*f.KeyGroups])
	}
	check(m.SideInputs[0].Files[0], s.side)
	for i, f := range m.Sources[0].Files {
		check(f, s.residual[i])
	}
	if err := sp.Verify(t.Context()); err != nil {
		t.Error(err)
	}
}

func at(rs []Record, i int) Record {
	if i < len(rs) {
		return rs[i]
	}
	return nil
}

func TestRoundTrip(t *testing.T) {
	st := fileStore(t, t.TempDir())
	writeSample(t, st, newSample())
	checkSample(t, st, "savepoint-count-7", newSample())

	dirs, err := List(t.Context(), st, "count")
	if err != nil || !reflect.DeepEqual(dirs, []string{"savepoint-count-7"}) {
		t.Errorf("List = %q, %v", dirs, err)
	}
	latest, err := FindLatest(t.Context(), st, "count")
	if err != nil || latest.Dir() != "savepoint-count-7" {
		t.Errorf("FindLatest = %v, %v", latest, err)
	}
	if _, err := FindLatest(t.Context(), st, "other"); !errors.Is(err, ErrNoSavepoint) {
		t.Errorf("FindLatest of another job = %v, want ErrNoSavepoint", err)
	}
}

// TestRelocate copies a savepoint directory with plain file copies to
// another place and under another root, and reads it back from there.
func TestRelocate(t *testing.T) {
	from, to := t.TempDir(), t.TempDir()
	writeSample(t, fileStore(t, from), newSample())
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, "backups", rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	checkSample(t, fileStore(t, to), "backups/savepoint-count-7", newSample())
	// The store's root may be the savepoint directory itself, and the
	// directory may be renamed.
	checkSample(t, fileStore(t, filepath.Join(to, "backups", "savepoint-count-7")), "", newSample())
	if err := os.Rename(filepath.Join(to, "backups", "savepoint-count-7"), filepath.Join(to, "backups", "mine")); err != nil {
		t.Fatal(err)
	}
	checkSample(t, fileStore(t, to), "backups/mine", newSample())
	// But a directory named as another savepoint is refused.
	if err := os.Rename(filepath.Join(to, "backups", "mine"), filepath.Join(to, "backups", "savepoint-count-8")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), fileStore(t, to), "backups/savepoint-count-8"); !errors.Is(err, ErrForeign) || !strings.Contains(err.Error(), "backups/savepoint-count-8/_metadata") {
		t.Errorf("Open of a savepoint under another savepoint's name = %v, want ErrForeign naming the file", err)
	}
}

func TestNeverOverwritten(t *testing.T) {
	root := t.TempDir()
	st := fileStore(t, root)
	ctx := t.Context()
	m := writeSample(t, st, newSample())
	if _, err := Create(ctx, st, "count", "7"); !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "savepoint-count-7") {
		t.Errorf("Create of a committed savepoint = %v, want ErrExists naming it", err)
	}

	// A writer commits once.
	w, err := Create(ctx, st, "count", "8")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(ctx, samplePipeline); err != nil {
		t.Fatal(err)
	}
	m2 := sampleMetadata()
	if err := w.Commit(ctx, m2); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, m2); !errors.Is(err, ErrExists) {
		t.Errorf("second Commit = %v, want ErrExists", err)
	}

	// A directory with files of a failed attempt is not reused either.
	w, err = Create(ctx, st, "count", "9")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(ctx, samplePipeline); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, st, "count", "9"); !errors.Is(err, ErrExists) {
		t.Errorf("Create over an unfinished savepoint = %v, want ErrExists", err)
	}
	// Two writers of one ID: the second commit is refused.
	w2 := &Writer{st: st, job: "count", id: "7", dir: "savepoint-count-7", owners: map[ownerKey]*ownerFiles{}, written: map[string]writtenFile{}, pipeline: &m.Pipeline}
	if err := w2.Commit(ctx, sampleMetadata()); !errors.Is(err, ErrExists) {
		t.Errorf("Commit over a committed savepoint = %v, want ErrExists", err)
	}
	checkSample(t, st, "savepoint-count-7", newSample())
	if dirs, err := List(ctx, st, "count"); err != nil || len(dirs) != 2 {
		t.Errorf("List = %q, %v; want the two committed savepoints", dirs, err)
	}
}

func TestWriterRefuses(t *testing.T) {
	st := fileStore(t, t.TempDir())
	ctx := t.Context()
	w, err := Create(ctx, st, "job", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sec   Section
		owner string
		kgs   *KeyGroupRange
	}{
		{0, "x", nil},
		{SectionTransforms, "", &KeyGroupRange{0, 1}},
		{SectionTransforms, "x", nil},
		{SectionTransforms, "x", &KeyGroupRange{2, 2}},
		{SectionTransforms, "x", &KeyGroupRange{-1, 2}},
		{SectionSources, "x", &KeyGroupRange{0, 2}},
	} {
		if _, err := w.File(ctx, tc.sec, tc.owner, tc.kgs); err == nil {
			t.Errorf("File(%v, %q, %v) succeeded", tc.sec, tc.owner, tc.kgs)
		}
	}
	rw, err := w.File(ctx, SectionTransforms, "x", &KeyGroupRange{2, 6})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.File(ctx, SectionTransforms, "x", &KeyGroupRange{5, 7}); err == nil {
		t.Error("File with an overlapping range succeeded")
	}
	good := &StateRecord{KeyGroup: 3, StateID: "s"}
	for _, r := range []Record{
		nil,
		(*StateRecord)(nil),
		&StateRecord{KeyGroup: 1, StateID: "s"}, // outside the range
		&StateRecord{KeyGroup: 6, StateID: "s"},
		&GroupValueRecord{KeyGroup: 3},              // another section's
		&ResidualRecord{},                           // another section's
		&TimerRecord{KeyGroup: 3, Domain: "wall"},   // unknown domain
		&StateRecord{KeyGroup: 2, StateID: "after"}, // out of order, after good
	} {
		if r == nil {
			if err := rw.Write(good); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := rw.Write(r); err == nil {
			t.Errorf("Write(%+v) succeeded", r)
		}
	}
	if err := w.Commit(ctx, &Metadata{MaxParallelism: 8, Parallelism: 1}); err == nil || !strings.Contains(err.Error(), "not closed") {
		t.Errorf("Commit with an open file = %v", err)
	}
	f, err := rw.Close()
	if err != nil || f.Records != 1 {
		t.Fatalf("Close = %+v, %v", f, err)
	}
	if err := rw.Write(good); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := rw.Close(); err == nil {
		t.Error("second Close succeeded")
	}
	m := &Metadata{MaxParallelism: 8, Parallelism: 1, Transforms: []Transform{{UniqueName: "x"}}}
	if err := w.Commit(ctx, m); err == nil || !strings.Contains(err.Error(), "no pipeline") {
		t.Errorf("Commit without a pipeline = %v", err)
	}
	if _, err := w.Pipeline(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, m); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Errorf("Commit without a written file = %v", err)
	}
	m.Transforms[0].Files = []File{f}
	m.Transforms[0].Files[0].Records++
	if err := w.Commit(ctx, m); err == nil || !strings.Contains(err.Error(), "was written") {
		t.Errorf("Commit with a wrong file = %v", err)
	}
	m.Transforms[0].Files[0] = f
	m.Transforms[0].UniqueName = "y"
	if err := w.Commit(ctx, m); err == nil || !strings.Contains(err.Error(), "written for") {
		t.Errorf("Commit with a file of another owner = %v", err)
	}
	m.Transforms[0].UniqueName = "x"
	m.Job = "other"
	if err := w.Commit(ctx, m); err == nil {
		t.Error("Commit of another job's metadata succeeded")
	}
	m.Job = ""
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	// An abandoned file leaves nothing.
	w, err = Create(ctx, st, "job", "2")
	if err != nil {
		t.Fatal(err)
	}
	rw, err = w.File(ctx, SectionSources, "src", nil)
	if err != nil {
		t.Fatal(err)
	}
	rw.Abort()
	if names, err := st.List(ctx, "savepoint-job-2/"); err != nil || len(names) != 0 {
		t.Errorf("after Abort: %q, %v", names, err)
	}
}

// TestDamagedFiles damages the files of a savepoint and expects errors that
// name the file.
func TestDamagedFiles(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }, "truncated"},
		{"truncated before the footer", func(b []byte) []byte { return b[:len(b)-39] }, "no footer"},
		{"truncated in the header", func(b []byte) []byte { return b[:5] }, "truncated"},
		{"flipped byte", func(b []byte) []byte { b[20] ^= 1; return b }, "CRC mismatch"},
		{"flipped footer byte", func(b []byte) []byte { b[len(b)-10] ^= 1; return b }, "CRC mismatch"},
		{"appended", func(b []byte) []byte { return append(b, 0) }, "after the footer"},
		{"empty", func([]byte) []byte { return nil }, "truncated"},
		{"foreign", func(b []byte) []byte { b[0] = 'X'; return b }, "not a savepoint data file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, st, sp := openSample(t)
			f := sp.meta.SideInputs[0].Files[0]
			p := filepath.Join(root, "savepoint-count-7", f.Path)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, tc.damage(data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = readRecords(t, sp, f.Path)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), st.String()+"/savepoint-count-7/"+f.Path) {
				t.Errorf("read = %v; want ErrCorrupt, %q, naming the file", err, tc.want)
			}
			if err := sp.Verify(ctx); err == nil {
				t.Error("Verify succeeded")
			}
		})
	}
}

// TestWrongFigures reads intact files whose metadata records other figures.
func TestWrongFigures(t *testing.T) {
	root, _, sp := openSample(t)
	path := sp.meta.Groups[0].Files[0].Path
	for _, tc := range []struct {
		name   string
		change func(*File)
		want   string
	}{
		{"size", func(f *File) { f.Size++ }, "the metadata records"},
		{"smaller size", func(f *File) { f.Size -= 2 }, "past the recorded size"},
		{"sha256", func(f *File) { f.SHA256 = strings.Repeat("0", 64) }, "the metadata records sha256:0000"},
		{"count", func(f *File) { f.Records++ }, "records, the metadata records"},
		{"key groups", func(f *File) { f.KeyGroups = &KeyGroupRange{3, 8} }, "outside the file's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			of := sp.files[path]
			orig := of
			f := of.file
			tc.change(&f)
			of.file = f
			sp.files[path] = of
			defer func() { sp.files[path] = orig }()
			_, err := readRecords(t, sp, path)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("read = %v; want ErrCorrupt, %q, naming the file", err, tc.want)
			}
		})
	}
	// The pipeline too.
	if err := os.WriteFile(filepath.Join(root, "savepoint-count-7", PipelineBase), []byte("other"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Pipeline(t.Context()); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), PipelineBase) {
		t.Errorf("Pipeline = %v, want ErrCorrupt naming it", err)
	}
	if _, err := sp.Records(t.Context(), "nope.rec"); err == nil {
		t.Error("Records of an unlisted file succeeded")
	}
}

// TestUndeclared reads records whose state, timer family or side input the
// metadata does not declare.
func TestUndeclared(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Metadata)
		want   string
	}{
		{"state", func(m *Metadata) { m.Transforms[0].States = m.Transforms[0].States[1:] }, `state "bag" is not declared`},
		{"timer", func(m *Metadata) { m.Transforms[0].Timers = m.Transforms[0].Timers[:1] }, `timer family "gc" is not declared`},
		{"domain", func(m *Metadata) { m.Transforms[0].Timers[0].Domain = ProcessingTime }, `the family's is "processing"`},
		{"side input", func(m *Metadata) { m.SideInputs[0].Inputs = m.SideInputs[0].Inputs[1:] }, `side input "lookup" is not declared`},
		{"iterable", func(m *Metadata) {
			m.SideInputs[0].Inputs[0].Kind = SideIterable
			m.SideInputs[0].Inputs[0].KeyCoder = ""
		}, `a key for iterable`},
		{"parked", func(m *Metadata) { m.SideInputs[0].InputCoder = "" }, "no input coder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, st, sp := openSample(t)
			m := sp.meta.canonical()
			tc.change(&m)
			data, err := EncodeMetadata(&m)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "savepoint-count-7", MetadataBase), data, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Verify(t, st); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want ErrCorrupt and %q", err, tc.want)
			}
		})
	}
}

func Verify(t *testing.T, st storage.Storage) error {
	sp, err := Open(t.Context(), st, "savepoint-count-7")
	if err != nil {
		t.Fatal(err)
	}
	return sp.Verify(t.Context())
}

// TestConcurrentFiles writes the files of one savepoint from several
// goroutines, one with a record larger than a read chunk.
func TestConcurrentFiles(t *testing.T) {
	st := fileStore(t, t.TempDir())
	ctx := t.Context()
	w, err := Create(ctx, st, "big", "1")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 4<<16) // 4 MiB
	files := make([]File, 4)
	var wg sync.WaitGroup
	errs := make(chan error, len(files))
	for i := range files {
		wg.Go(func() {
			rw, err := w.File(ctx, SectionGroups, "gbk", &KeyGroupRange{2 * i, 2*i + 2})
			if err != nil {
				errs <- err
				return
			}
			for kg := 2 * i; kg < 2*i+2; kg++ {
				if err := rw.Write(&GroupValueRecord{KeyGroup: kg, Key: []byte{byte(kg)}, Value: big[:kg<<19]}); err != nil {
					errs <- err
					return
				}
			}
			files[i], err = rw.Close()
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Pipeline(ctx, samplePipeline); err != nil {
		t.Fatal(err)
	}
	m := &Metadata{Created: time.Now(), MaxParallelism: 8, Parallelism: 4,
		Groups: []Group{{UniqueName: "gbk", KeyCoder: "k", ValueCoder: "v", WindowCoder: "w", Files: files}}}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	sp, err := Open(ctx, st, w.Dir())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		recs, err := readRecords(t, sp, f.Path)
		if err != nil || len(recs) != 2 {
			t.Fatalf("%s: %d records, %v", f.Path, len(recs), err)
		}
		for _, r := range recs {
			g := r.(*GroupValueRecord)
			if !bytes.Equal(g.Value, big[:g.KeyGroup<<19]) {
				t.Errorf("%s: key group %d: value of %d bytes differs", f.Path, g.KeyGroup, len(g.Value))
			}
		}
	}
}
