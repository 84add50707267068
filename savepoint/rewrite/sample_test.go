package rewrite

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// The sample savepoint of these tests: job "cards", max parallelism 16,
// taken at parallelism 2, with keys whose records sit in their real key
// groups (state.KeyGroup), so they can be regrouped.
const (
	sampleMaxP  = 16
	sampleKeys  = 300
	sampleJob   = "cards"
	sampleID    = "sp1"
	transform   = "count/Stateful"
	other       = "count/Sum"
	group       = "count/GBK"
	sideReader  = "count/Join"
	source      = "read/Source"
	impulse     = "read/Impulse"
	pipelineRaw = "\x0a\x03not read by a rewrite"
)

func keyOf(i int) []byte { return []byte(fmt.Sprintf("\x05key%03d", i)) }

// sampleMetadata declares the sample's owners (no files).
func sampleMetadata() *savepoint.Metadata {
	return &savepoint.Metadata{
		Created:        time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC),
		MaxParallelism: sampleMaxP,
		Parallelism:    2,
		Transforms: []savepoint.Transform{{
			UniqueName: transform,
			DoFn:       "urn@abc",
			States: []savepoint.StateSpec{
				{ID: "total", Kind: savepoint.KindValue, KeyCoder: "str", WindowCoder: "gw", ValueCoder: "int"},
				{ID: "orders", Kind: savepoint.KindBag, KeyCoder: "str", WindowCoder: "gw", ValueCoder: "str"},
			},
			Timers: []savepoint.TimerFamily{{ID: "flush", Domain: savepoint.EventTime, KeyCoder: "str", WindowCoder: "gw"}},
		}, {
			UniqueName: other,
			States:     []savepoint.StateSpec{{ID: "sum", Kind: savepoint.KindValue, KeyCoder: "str", WindowCoder: "gw", ValueCoder: "int"}},
		}},
		Groups: []savepoint.Group{{UniqueName: group, KeyCoder: "str", ValueCoder: "int", WindowCoder: "gw"}},
		SideInputs: []savepoint.SideInputs{{
			UniqueName: sideReader,
			Inputs:     []savepoint.SideInputSpec{{ID: "totals", Kind: savepoint.SideIterable, ValueCoder: "int", WindowCoder: "gw"}},
			InputCoder: "wv",
		}},
		Sources:       []savepoint.Source{{UniqueName: source, RestrictionCoder: "r"}},
		FiredImpulses: []string{impulse},
	}
}

// keyedRecords are the keyed records of owner (a transform or the
// GroupByKey) for key i, in their order.
func keyedRecords(owner string, i int) []savepoint.Record {
	k := keyOf(i)
	kg := state.KeyGroup(k, sampleMaxP)
	switch owner {
	case transform:
		return []savepoint.Record{
			&savepoint.StateRecord{KeyGroup: kg, Key: k, StateID: "total", Value: []byte{byte(i)}},
			&savepoint.StateRecord{KeyGroup: kg, Key: k, StateID: "orders", Value: []byte(fmt.Sprintf("first of %d", i))},
			&savepoint.StateRecord{KeyGroup: kg, Key: k, StateID: "orders", Value: []byte(fmt.Sprintf("second of %d", i))},
			&savepoint.TimerRecord{KeyGroup: kg, Key: k, Family: "flush", Tag: []byte("t"), Domain: savepoint.EventTime, Fire: int64(i), Hold: int64(i)},
		}
	case other:
		if i%3 != 0 {
			return nil
		}
		return []savepoint.Record{&savepoint.StateRecord{KeyGroup: kg, Key: k, StateID: "sum", Value: []byte{byte(i), 1}}}
	case group:
		return []savepoint.Record{
			&savepoint.GroupValueRecord{KeyGroup: kg, Key: k, Timestamp: 30, Value: []byte{3}},
			&savepoint.GroupValueRecord{KeyGroup: kg, Key: k, Timestamp: 10, Value: []byte{1}},
			&savepoint.TriggerRecord{KeyGroup: kg, Key: k, State: []byte{byte(i)}},
		}
	}
	return nil
}

var (
	sideRecords = []savepoint.Record{
		&savepoint.SideInputRecord{SideInput: "totals", Values: []byte{1, 2, 3}},
		&savepoint.ParkedRecord{Need: 60000, MinTimestamp: 10, Elements: []byte("parked")},
	}
	residuals = [][]savepoint.Record{
		{&savepoint.ResidualRecord{Restriction: []byte("r0"), Watermark: 5}},
		{&savepoint.ResidualRecord{Restriction: []byte("r1"), Watermark: 6}, &savepoint.ResidualRecord{Restriction: []byte("r2"), Watermark: 7}},
	}
)

// writeSample writes the sample savepoint into st (as the engine would:
// one file per owner per subtask's key-group range) and returns its
// directory.
func writeSample(t *testing.T, st storage.Storage, keyGroupOf func(key []byte) int) string {
	t.Helper()
	ctx := t.Context()
	w, err := savepoint.Create(ctx, st, sampleJob, sampleID)
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMetadata()
	if m.Pipeline, err = w.Pipeline(ctx, []byte(pipelineRaw)); err != nil {
		t.Fatal(err)
	}
	write := func(sec savepoint.Section, owner string, kgs *savepoint.KeyGroupRange, recs []savepoint.Record) savepoint.File {
		rw, err := w.File(ctx, sec, owner, kgs)
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
		return f
	}
	keyed := func(sec savepoint.Section, owner string) []savepoint.File {
		var files []savepoint.File
		for part := range m.Parallelism {
			lo, hi := state.KeyGroupRange(part, m.Parallelism, sampleMaxP)
			var recs []savepoint.Record
			for kg := lo; kg < hi; kg++ {
				for i := range sampleKeys {
					if keyGroupOf(keyOf(i)) == kg {
						for _, r := range keyedRecords(owner, i) {
							_, kgp, _ := keyedFields(r)
							*kgp = kg
							recs = append(recs, r)
						}
					}
				}
			}
			files = append(files, write(sec, owner, &savepoint.KeyGroupRange{Start: lo, End: hi}, recs))
		}
		return files
	}
	m.Transforms[0].Files = keyed(savepoint.SectionTransforms, transform)
	m.Transforms[1].Files = keyed(savepoint.SectionTransforms, other)
	m.Groups[0].Files = keyed(savepoint.SectionGroups, group)
	m.SideInputs[0].Files = []savepoint.File{write(savepoint.SectionSideInputs, sideReader, nil, sideRecords)}
	for _, recs := range residuals {
		m.Sources[0].Files = append(m.Sources[0].Files, write(savepoint.SectionSources, source, nil, recs))
	}
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return w.Dir()
}

func realKeyGroup(key []byte) int { return state.KeyGroup(key, sampleMaxP) }

func fileStore(t *testing.T, dir string) storage.Storage {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// snapshot maps every file under dir to the SHA-256 of its content.
func snapshot(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ownerRecords reads the records of every file of an owner, with the
// files they came from.
type fileRecords struct {
	file savepoint.File
	recs []savepoint.Record
}

func readOwner(t *testing.T, sp *savepoint.Savepoint, files []savepoint.File) []fileRecords {
	t.Helper()
	var out []fileRecords
	for _, f := range files {
		rr, err := sp.Records(t.Context(), f.Path)
		if err != nil {
			t.Fatal(err)
		}
		fr := fileRecords{file: f}
		for rr.Next() {
			fr.recs = append(fr.recs, rr.Record())
		}
		if err := rr.Err(); err != nil {
			t.Fatal(err)
		}
		rr.Close()
		out = append(out, fr)
	}
	return out
}

// byKey groups the records of an owner by key (in file and record order),
// with key groups cleared, so that savepoints of different max
// parallelism compare.
func byKey(t *testing.T, frs []fileRecords) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, fr := range frs {
		for _, r := range fr.recs {
			key, kgp, ok := keyedFields(r)
			if !ok {
				t.Fatalf("unkeyed %T in %s", r, fr.file.Path)
			}
			kg := *kgp
			*kgp = 0
			out[string(key)] = append(out[string(key)], fmt.Sprintf("%+v", r))
			*kgp = kg
		}
	}
	return out
}

func flat(frs []fileRecords) []string {
	var out []string
	for _, fr := range frs {
		for _, r := range fr.recs {
			out = append(out, fmt.Sprintf("%+v", r))
		}
	}
	return slices.Clip(out)
}
