package rewrite

import (
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// TestMaxParallelism rewrites the sample to other max parallelisms: every
// keyed record lands in its key's key group under the new count, inside
// its file's range, the files cover the ranges of the savepoint's
// parallelism, each key keeps its records in order, counts are kept,
// unkeyed state is carried over as it was, and the source is untouched.
func TestMaxParallelism(t *testing.T) {
	for _, tc := range []struct {
		name              string
		maxP, parallelism int
	}{
		{"fewer", 5, 2},
		{"more", 64, 2},
		{"one", 1, 1},
		{"largest", savepoint.MaxKeyGroups, 2},
		{"same", sampleMaxP, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcDir, dstDir := t.TempDir(), t.TempDir()
			src, dst := fileStore(t, srcDir), fileStore(t, dstDir)
			dir := writeSample(t, src, realKeyGroup)
			before := snapshot(t, srcDir)
			res, err := Rewrite(t.Context(), src, dir, dst, Options{MaxParallelism: tc.maxP})
			if err != nil {
				t.Fatal(err)
			}
			if after := snapshot(t, srcDir); !maps.Equal(before, after) {
				t.Fatalf("the source savepoint changed: %d files before, %d after", len(before), len(after))
			}
			if res.Regrouped != (tc.maxP != sampleMaxP) {
				t.Errorf("Regrouped = %v", res.Regrouped)
			}
			old, err := savepoint.Open(t.Context(), src, dir)
			if err != nil {
				t.Fatal(err)
			}
			sp, err := savepoint.Open(t.Context(), dst, res.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.Verify(t.Context()); err != nil {
				t.Fatal(err)
			}
			m := sp.Metadata()
			if m.MaxParallelism != tc.maxP || m.Parallelism != tc.parallelism || m.Job != sampleJob || m.ID == sampleID || !m.Created.Equal(old.Metadata().Created) {
				t.Fatalf("metadata: max parallelism %d, parallelism %d, job %q, ID %q, created %v", m.MaxParallelism, m.Parallelism, m.Job, m.ID, m.Created)
			}
			var total int64
			keyed := map[string][2][]savepoint.File{
				transform: {old.Metadata().Transforms[0].Files, m.Transforms[0].Files},
				other:     {old.Metadata().Transforms[1].Files, m.Transforms[1].Files},
				group:     {old.Metadata().Groups[0].Files, m.Groups[0].Files},
			}
			for _, owner := range slices.Sorted(maps.Keys(keyed)) {
				files := keyed[owner]
				was, is := readOwner(t, old, files[0]), readOwner(t, sp, files[1])
				if len(is) != tc.parallelism {
					t.Errorf("%s: %d files, want one per key-group range of parallelism %d", owner, len(is), tc.parallelism)
				}
				for i, fr := range is {
					lo, hi := state.KeyGroupRange(i, tc.parallelism, tc.maxP)
					if r := *fr.file.KeyGroups; r.Start != lo || r.End != hi {
						t.Errorf("%s: file %s of key groups [%d, %d), want [%d, %d)", owner, fr.file.Path, r.Start, r.End, lo, hi)
					}
					for _, r := range fr.recs {
						key, kg, _ := keyedFields(r)
						if want := state.KeyGroup(key, tc.maxP); *kg != want || !fr.file.KeyGroups.Contains(*kg) {
							t.Fatalf("%s: record of key %q in key group %d of file %s [%d, %d), its key's is %d",
								owner, key, *kg, fr.file.Path, fr.file.KeyGroups.Start, fr.file.KeyGroups.End, want)
						}
					}
					total += int64(len(fr.recs))
				}
				if w, g := byKey(t, was), byKey(t, is); !reflect.DeepEqual(w, g) {
					t.Errorf("%s: records by key differ: %d keys before, %d after", owner, len(w), len(g))
				}
			}
			for _, tc := range []struct {
				what     string
				was, now []savepoint.File
			}{
				{"side inputs", old.Metadata().SideInputs[0].Files, m.SideInputs[0].Files},
				{"source", old.Metadata().Sources[0].Files, m.Sources[0].Files},
			} {
				if w, g := flat(readOwner(t, old, tc.was)), flat(readOwner(t, sp, tc.now)); !slices.Equal(w, g) {
					t.Errorf("%s: %q, want %q", tc.what, g, w)
				}
				total += int64(len(flat(readOwner(t, sp, tc.now))))
			}
			if want := int64(sampleKeys*(4+3) + sampleKeys/3 + 2 + 3); total != want || res.Records != want {
				t.Errorf("%d records in the new savepoint, Result says %d, want %d", total, res.Records, want)
			}
			if !slices.Equal(m.FiredImpulses, []string{impulse}) {
				t.Errorf("fired Impulses %q", m.FiredImpulses)
			}
			if p, err := sp.Pipeline(t.Context()); err != nil || string(p) != pipelineRaw {
				t.Errorf("pipeline %q, %v: want the source's", p, err)
			}
		})
	}
}

// TestRenameAndDrop: renames and drops show in the metadata and in the
// records; what they do not name is carried over.
func TestRenameAndDrop(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		// want: the new savepoint's owners by section, the states and
		// timers of the first transform, fired Impulses.
		transforms, groups, sides, sources, fired, ids []string
		dropped                                        []string
	}{
		{name: "rename a prefix", o: Options{Rename: map[string]string{"count": "tally"}},
			transforms: []string{"tally/Stateful", "tally/Sum"}, groups: []string{"tally/GBK"}, sides: []string{"tally/Join"}, sources: []string{source},
			fired: []string{impulse}, ids: []string{"orders", "total", "flush"}},
		{name: "longest prefix wins", o: Options{Rename: map[string]string{"count": "tally", "count/Sum": "Summed", "read": "in"}},
			transforms: []string{"Summed", "tally/Stateful"}, groups: []string{"tally/GBK"}, sides: []string{"tally/Join"}, sources: []string{"in/Source"},
			fired: []string{"in/Impulse"}, ids: []string{"orders", "total", "flush"}},
		{name: "drop a prefix", o: Options{Drop: []string{"read"}},
			transforms: []string{transform, other}, groups: []string{group}, sides: []string{sideReader},
			ids: []string{"orders", "total", "flush"}, dropped: []string{`sources "read/Source"`, `fired Impulse "read/Impulse"`}},
		{name: "drop a transform and a GroupByKey", o: Options{Drop: []string{other, group}},
			transforms: []string{transform}, sides: []string{sideReader}, sources: []string{source}, fired: []string{impulse},
			ids: []string{"orders", "total", "flush"}, dropped: []string{`transforms "count/Sum"`, `groups "count/GBK"`}},
		{name: "drop a state and a timer family, rename", o: Options{Drop: []string{transform + "/orders", transform + "/flush"}, Rename: map[string]string{transform: "Stateful"}},
			transforms: []string{"Stateful", other}, groups: []string{group}, sides: []string{sideReader}, sources: []string{source}, fired: []string{impulse},
			ids:     []string{"total"},
			dropped: []string{`state or timer family "flush" of transform "count/Stateful"`, `state or timer family "orders" of transform "count/Stateful"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcDir := t.TempDir()
			src, dst := fileStore(t, srcDir), fileStore(t, t.TempDir())
			dir := writeSample(t, src, realKeyGroup)
			before := snapshot(t, srcDir)
			res, err := Rewrite(t.Context(), src, dir, dst, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(before, snapshot(t, srcDir)) {
				t.Fatal("the source savepoint changed")
			}
			if !slices.Equal(res.Dropped, tc.dropped) {
				t.Errorf("Dropped = %q, want %q", res.Dropped, tc.dropped)
			}
			sp, err := savepoint.Open(t.Context(), dst, res.Dir)
			if err != nil {
				t.Fatal(err)
			}
			old, err := savepoint.Open(t.Context(), src, dir)
			if err != nil {
				t.Fatal(err)
			}
			m := sp.Metadata()
			names := func(n int, name func(int) string) []string {
				var out []string
				for i := range n {
					out = append(out, name(i))
				}
				return out
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{
				{"transforms", names(len(m.Transforms), func(i int) string { return m.Transforms[i].UniqueName }), tc.transforms},
				{"groups", names(len(m.Groups), func(i int) string { return m.Groups[i].UniqueName }), tc.groups},
				{"side inputs", names(len(m.SideInputs), func(i int) string { return m.SideInputs[i].UniqueName }), tc.sides},
				{"sources", names(len(m.Sources), func(i int) string { return m.Sources[i].UniqueName }), tc.sources},
				{"fired Impulses", m.FiredImpulses, tc.fired},
			} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s %q, want %q", c.what, c.got, c.want)
				}
			}
			// The first transform's declarations and records.
			i := slices.IndexFunc(m.Transforms, func(tr savepoint.Transform) bool { return strings.HasSuffix(tr.UniqueName, "Stateful") })
			tr := m.Transforms[i]
			var ids []string
			for _, s := range tr.States {
				ids = append(ids, s.ID)
			}
			for _, f := range tr.Timers {
				ids = append(ids, f.ID)
			}
			if !slices.Equal(ids, tc.ids) {
				t.Errorf("states and timers of %s: %q, want %q", tr.UniqueName, ids, tc.ids)
			}
			var want []string
			for _, fr := range readOwner(t, old, old.Metadata().Transforms[0].Files) {
				for _, r := range fr.recs {
					switch r := r.(type) {
					case *savepoint.StateRecord:
						if slices.Contains(tc.ids, r.StateID) {
							want = append(want, flat([]fileRecords{{recs: []savepoint.Record{r}}})...)
						}
					case *savepoint.TimerRecord:
						if slices.Contains(tc.ids, r.Family) {
							want = append(want, flat([]fileRecords{{recs: []savepoint.Record{r}}})...)
						}
					}
				}
			}
			if got := flat(readOwner(t, sp, tr.Files)); !slices.Equal(got, want) {
				t.Errorf("records of %s: %d, want %d (the source's but for dropped states)", tr.UniqueName, len(got), len(want))
			}
		})
	}
}

// TestRefused: a rewrite that cannot be done is refused before anything
// is written, naming what is wrong.
func TestRefused(t *testing.T) {
	srcDir := t.TempDir()
	src := fileStore(t, srcDir)
	dir := writeSample(t, src, realKeyGroup)
	before := snapshot(t, srcDir)
	existing := t.TempDir()
	if _, err := Rewrite(t.Context(), src, dir, fileStore(t, existing), Options{ID: "taken"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		dst  string // "" a fresh directory
		want []string
	}{
		{name: "unknown to drop", o: Options{Drop: []string{"nope"}}, want: []string{`drop "nope"`, "nothing in the savepoint is named", transform}},
		{name: "unknown state to drop", o: Options{Drop: []string{transform + "/nope"}}, want: []string{`"count/Stateful" has no state or timer family "nope"`, `"orders"`}},
		{name: "unknown to rename", o: Options{Rename: map[string]string{"count/Stat": "x"}}, want: []string{`rename "count/Stat"="x"`, "nothing in the savepoint is named"}},
		{name: "rename onto another", o: Options{Rename: map[string]string{other: transform}}, want: []string{`"count/Stateful" and "count/Sum" would both be named "count/Stateful"`}},
		{name: "rename to nothing", o: Options{Rename: map[string]string{other: ""}}, want: []string{`rename of "count/Sum" to an empty name`, "drop it"}},
		{name: "max parallelism 0 or less", o: Options{MaxParallelism: -1}, want: []string{"max parallelism -1 outside [1, 32768]"}},
		{name: "max parallelism too large", o: Options{MaxParallelism: savepoint.MaxKeyGroups + 1}, want: []string{"max parallelism 32769 outside [1, 32768]"}},
		{name: "destination in the source", dst: srcDir + "/" + dir, want: []string{"is inside the source savepoint"}},
		{name: "destination under the source", dst: srcDir + "/" + dir + "/sub", want: []string{"is inside the source savepoint"}},
		{name: "new savepoint exists", o: Options{ID: "taken"}, dst: existing, want: []string{"exists already", "is a committed savepoint", "choose another savepoint ID"}},
		{name: "bad ID", o: Options{ID: "a-b"}, want: []string{`savepoint ID "a-b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dstDir := tc.dst
			if dstDir == "" {
				dstDir = t.TempDir()
			}
			if err := os.MkdirAll(dstDir, 0o755); err != nil {
				t.Fatal(err)
			}
			dstBefore := snapshot(t, dstDir)
			_, err := Rewrite(t.Context(), src, dir, fileStore(t, dstDir), tc.o)
			if err == nil {
				t.Fatal("rewritten, want a refusal")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), "savepoint rewrite of "+src.String()+"/"+dir) {
				t.Errorf("error %q does not name the source", err)
			}
			if !maps.Equal(dstBefore, snapshot(t, dstDir)) {
				t.Error("a refused rewrite wrote files")
			}
		})
	}
	if !maps.Equal(before, snapshot(t, srcDir)) {
		t.Fatal("the source savepoint changed")
	}
}

// TestForeignKeyGroups: records that are not in their key's key group
// (not weir's grouping) are not regrouped; renames still work.
func TestForeignKeyGroups(t *testing.T) {
	src := fileStore(t, t.TempDir())
	dir := writeSample(t, src, func(key []byte) int { return int(key[len(key)-1]) % sampleMaxP })
	_, err := Rewrite(t.Context(), src, dir, fileStore(t, t.TempDir()), Options{MaxParallelism: 32})
	if err == nil || !strings.Contains(err.Error(), "cannot be regrouped by their keys") || !strings.Contains(err.Error(), `transforms "count/Stateful"`) ||
		!strings.Contains(err.Error(), "t1-kg0-8.rec") {
		t.Fatalf("regrouping records in foreign key groups: err = %v, want a refusal naming the transform and file", err)
	}
	if _, err := Rewrite(t.Context(), src, dir, fileStore(t, t.TempDir()), Options{Rename: map[string]string{"count": "c"}}); err != nil {
		t.Fatalf("renaming without regrouping: %v", err)
	}
}
