package portable

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

const maxP = 8

// The fixture: an SDK subtask's DB (user state of two transforms, timers,
// side inputs, parked input), a GroupByKey's window-first buffer, and a
// triggered GroupByKey's cells and timers.
const (
	trA, trB   = "e1", "e7" // transform IDs in the source DBs
	nameA      = "count/Stateful"
	nameB      = "count/Other"
	nameGBK    = "count/GBK"
	nameJoin   = "count/Join"
	expiryTr   = "\x00weir-expiry"
	expiryDom  = 8
	gcDomain   = 8
	expiryTime = 9000
)

var kinds = map[string]savepoint.StateKind{
	nameA + "/bag": savepoint.KindBag, nameA + "/seen": savepoint.KindMap, nameA + "/list": savepoint.KindOrderedList,
	nameB + "/count": savepoint.KindValue, nameB + "/set": savepoint.KindSet,
}

var windows = [][]byte{nil, []byte("w\x00\x01")} // the global window, and one with escaped bytes

func keyOf(kg int) []byte { return []byte(fmt.Sprintf("key\x00%d", kg)) }

func openDB(t *testing.T) *state.DB {
	t.Helper()
	db, err := state.Open(state.Options{Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cell(kg int, tr, id string, w []byte) state.Cell {
	return state.Cell{KeyGroup: kg, Transform: tr, StateID: id, Window: w, Key: keyOf(kg)}
}

func sdkTimer(kg, domain int, tr, fam string, w, tag []byte, fire, hold int64, pane byte) state.Timer {
	t := state.Timer{TimerID: state.TimerID{KeyGroup: kg, Domain: domain, Transform: tr, Family: fam, Key: keyOf(kg), Window: w, Tag: tag},
		Fire: fire, Hold: hold}
	t.Encoded = append(timerHead(t.Key, t.Tag, w, fire, hold), pane)
	return t
}

func expiry(kg int, w []byte) state.Timer {
	return state.Timer{TimerID: state.TimerID{KeyGroup: kg, Domain: expiryDom, Transform: expiryTr, Key: keyOf(kg), Window: w}, Fire: expiryTime, Hold: state.NoHold}
}

// buildSDK fills an SDK subtask's DB, in two bundles per key group.
func buildSDK(t *testing.T, db *state.DB) {
	for kg := 0; kg < maxP; kg++ {
		w := windows[kg%2]
		b := db.NewBundle()
		must(t, b.AppendBag(cell(kg, trA, "bag", w), []byte("a")))
		must(t, b.AppendBag(cell(kg, trA, "bag", w), []byte("bc")))
		must(t, b.AppendMap(cell(kg, trA, "seen", w), []byte("k2"), []byte("v2")))
		must(t, b.AppendMap(cell(kg, trA, "seen", w), []byte("k1"), []byte("v1")))
		must(t, b.AppendMap(cell(kg, trA, "seen", w), []byte{}, []byte("empty")))
		for _, e := range []struct {
			sk int64
			v  string
		}{{5, "x"}, {-3, "neg"}, {5, "y"}, {0, "zero"}, {5, "z"}, {math.MaxInt64, "max"}} {
			must(t, b.AppendOrdered(cell(kg, trA, "list", w), append(varint(e.sk), e.v...)))
		}
		must(t, b.SetTimer(sdkTimer(kg, domainEvent, trA, "flush", w, nil, 1000+int64(kg), 900+int64(kg), 0x0f)))
		must(t, b.SetTimer(sdkTimer(kg, domainProcessing, trA, "poll", w, []byte("tag\x00"), -5, state.NoHold, 0x01)))
		must(t, b.SetTimer(sdkTimer(kg, domainEvent, trB, "flush", w, []byte("t2"), 2000, 1500-int64(kg), 0x0f)))
		must(t, b.PutFixedTimer(expiry(kg, w)))
		must(t, b.AppendBag(cell(kg, trB, "count", w), []byte("old")))
		must(t, b.AppendMap(cell(kg, trB, "set", w), []byte("e1"), nil))
		must(t, b.Commit())
		b = db.NewBundle()
		// A value state rewritten: a clear, then an append at slot zero.
		must(t, b.ClearBag(cell(kg, trB, "count", w)))
		must(t, b.AppendBag(cell(kg, trB, "count", w), []byte("new")))
		must(t, b.AppendBag(cell(kg, trA, "bag", w), []byte("d")))
		must(t, b.AppendMap(cell(kg, trA, "seen", w), []byte("k2"), []byte("v3")))
		must(t, b.SetTimer(sdkTimer(kg, domainEvent, trA, "flush", w, nil, 1100+int64(kg), 800, 0x0f))) // replaced
		must(t, b.Commit())
	}
	sb := db.NewSideBatch()
	must(t, sb.AddValues(0, windows[1], []byte("123")))
	must(t, sb.AddValues(0, windows[1], []byte("45")))
	must(t, sb.AddValues(0, nil, []byte("g")))
	must(t, sb.AddMulti(1, windows[1], []byte("kb"), []byte("vb")))
	must(t, sb.AddMulti(1, windows[1], []byte("ka"), []byte("va1")))
	must(t, sb.AddMulti(1, windows[1], []byte("ka"), []byte("va2")))
	must(t, sb.Commit())
	for i, p := range []struct{ need, min int64 }{{60000, 100}, {30000, 50}, {60000, 10}, {90000, 70}} {
		must(t, db.Park(p.need, p.min, []byte(fmt.Sprintf("elements %d", i))))
	}
}

func varint(v int64) []byte {
	var b []byte
	u := uint64(v)
	for u >= 0x80 {
		b = append(b, byte(u)|0x80)
		u >>= 7
	}
	return append(b, byte(u))
}

func maxTimestamp(w []byte) (int64, error) { return int64(len(w)) * 1000, nil }

var bufGroup = &Group{Name: nameGBK, Prefix: []byte("g"), Transform: "g", ValuesCell: "v", WindowFirst: true, MaxTimestamp: maxTimestamp}

func buildBuffer(t *testing.T, db *state.DB) {
	buf := db.GroupBuffer(bufGroup.Prefix)
	for kg := 0; kg < maxP; kg++ {
		for i, w := range windows {
			for j := 0; j < 3; j++ {
				ts, _ := maxTimestamp(w)
				must(t, buf.Add(kg, state.WindowKey(ts, w), keyOf(kg), int64(10*i-j), []byte(fmt.Sprintf("v%d-%d", i, j))))
			}
		}
	}
	must(t, buf.Flush())
}

var trigGroup = &Group{Name: nameGBK, Prefix: []byte("g"), Transform: "g", ValuesCell: "v", Triggered: true}

func buildTriggered(t *testing.T, db *state.DB) {
	for kg := 0; kg < maxP; kg++ {
		b := db.NewBundle()
		w := windows[1]
		for i := 0; i < 3; i++ {
			must(t, b.AppendBag(cell(kg, "g", "v", w), frameValue([]byte(fmt.Sprintf("val%d", i)))))
		}
		must(t, b.AppendBag(cell(kg, "g", "t", w), []byte{1, 2, 3}))
		must(t, b.AppendBag(cell(kg, "g", "m", w), []byte("meta")))
		for _, tm := range []state.Timer{
			{TimerID: state.TimerID{KeyGroup: kg, Domain: domainEvent, Transform: "g", Family: "end", Key: keyOf(kg), Window: w}, Fire: 2000, Hold: state.NoHold},
			{TimerID: state.TimerID{KeyGroup: kg, Domain: gcDomain, Transform: "g", Family: "gc", Key: keyOf(kg), Window: w}, Fire: 3000, Hold: state.NoHold},
			{TimerID: state.TimerID{KeyGroup: kg, Domain: domainProcessing, Transform: "g", Family: "wake", Key: keyOf(kg), Window: w}, Fire: 77, Hold: state.NoHold},
		} {
			must(t, b.SetTimer(tm))
		}
		must(t, b.Commit())
	}
}

// view is what the state package reads back of a DB, per key group.
func view(t *testing.T, db *state.DB, kg int) string {
	t.Helper()
	var sb strings.Builder
	out := func(what string, v []byte, err error) {
		must(t, err)
		fmt.Fprintf(&sb, "%s=%q\n", what, v)
	}
	b := db.NewBundle()
	defer b.Discard()
	for _, w := range windows {
		for _, c := range []state.Cell{cell(kg, trA, "bag", w), cell(kg, trB, "count", w), cell(kg, "g", "v", w), cell(kg, "g", "t", w), cell(kg, "g", "m", w)} {
			v, err := b.ReadBag(c)
			out(c.Transform+"/"+c.StateID, v, err)
		}
		for _, c := range []state.Cell{cell(kg, trA, "seen", w), cell(kg, trB, "set", w)} {
			v, err := b.MapKeys(c)
			out(c.StateID+" keys", v, err)
			for _, mk := range []string{"", "k1", "k2", "e1"} {
				v, err := b.ReadMap(c, []byte(mk))
				out(c.StateID+"["+mk+"]", v, err)
			}
		}
		v, err := b.ReadOrdered(cell(kg, trA, "list", w), math.MinInt64, math.MaxInt64)
		out("list", v, err)
		v, err = b.ReadOrdered(cell(kg, trA, "list", w), 0, 6)
		out("list[0,6)", v, err)
	}
	for _, d := range []int{domainEvent, domainProcessing, expiryDom} {
		ts, err := b.DueTimersIn(d, kg, kg+1, math.MaxInt64, 100)
		must(t, err)
		for _, tm := range ts {
			fmt.Fprintf(&sb, "timer %+v\n", tm)
		}
	}
	must(t, db.ScanTimers(kg, func(tm state.Timer) error {
		fmt.Fprintf(&sb, "lookup %s/%s %d fire %d hold %d\n", tm.Transform, tm.Family, tm.Domain, tm.Fire, tm.Hold)
		return nil
	}))
	h, ok, err := b.MinHold(kg, kg+1)
	must(t, err)
	fmt.Fprintf(&sb, "min hold %d %v\n", h, ok)
	must(t, db.GroupBuffer([]byte("g")).ScanPairs(kg, kg+1, math.MaxInt64, func(_ int, first []byte, recs []state.Record) error {
		fmt.Fprintf(&sb, "pairs %q %+v\n", first, recs)
		return nil
	}))
	return sb.String()
}

// unkeyedView reads the side inputs and (destructively) the parked input.
func unkeyedView(t *testing.T, db *state.DB) (side string, parked []string) {
	t.Helper()
	var sb strings.Builder
	for _, w := range windows {
		v, _, err := db.ReadSideValues(0, w, nil, 1<<20)
		must(t, err)
		fmt.Fprintf(&sb, "values %q\n", v)
		v, _, err = db.ReadSideKeys(1, w, nil, 1<<20)
		must(t, err)
		fmt.Fprintf(&sb, "keys %q\n", v)
		for _, k := range []string{"ka", "kb"} {
			v, _, err = db.ReadSideMulti(1, w, []byte(k), nil, 1<<20)
			must(t, err)
			fmt.Fprintf(&sb, "multi %s %q\n", k, v)
		}
	}
	need, minTs, ok, err := db.ParkedBounds()
	must(t, err)
	if ok {
		parked = append(parked, fmt.Sprintf("bounds %d %d", need, minTs))
	}
	_, err = db.ReleaseParked(math.MaxInt64, 1<<20, func(el []byte) error {
		parked = append(parked, string(el))
		return nil
	})
	must(t, err)
	return sb.String(), parked
}

type rec struct {
	owner Owner
	r     savepoint.Record
}

var source = Source{
	Names: func(id string) (string, bool) {
		n, ok := map[string]string{trA: nameA, trB: nameB}[id]
		return n, ok
	},
	SideInput: func(i int) (string, string, bool) {
		switch i {
		case 0:
			return nameJoin, "totals", true
		case 1:
			return nameJoin, "lookup", true
		}
		return "", "", false
	},
	Parked: nameJoin,
}

func export(t *testing.T, db *state.DB, src Source) []rec {
	t.Helper()
	var out []rec
	must(t, Export(db, 0, maxP, src, func(o Owner, r savepoint.Record) error {
		out = append(out, rec{o, r})
		return nil
	}))
	return out
}

// target maps the new pipeline: other transform IDs, the same names.
func target(g *Group, parts, part int) Target {
	return Target{
		Transforms: func(n string) (string, bool) {
			id, ok := map[string]string{nameA: trA, nameB: trB}[n]
			return id, ok
		},
		StateKind: func(n, id string) (savepoint.StateKind, bool) {
			k, ok := kinds[n+"/"+id]
			return k, ok
		},
		Group: g,
		SideInput: func(owner, local string) (int, bool, bool) {
			if owner != nameJoin {
				return 0, false, false
			}
			switch local {
			case "totals":
				return 0, false, true
			case "lookup":
				return 1, true, true
			}
			return 0, false, false
		},
		Parked: func(owner string, n int) (bool, bool) { return n%parts == part, owner == nameJoin },
		// Small runs: an import writes several (state.Load).
		RunBytes: 64 << (parts + part),
		OnUserState: func(b *state.Bundle, c state.Cell) error {
			return b.PutFixedTimer(expiry(c.KeyGroup, c.Window))
		},
	}
}

func importAll(t *testing.T, recs []rec, lo, hi int, tg Target) *state.DB {
	t.Helper()
	db := openDB(t)
	im, err := NewImporter(db, lo, hi, tg)
	must(t, err)
	for _, r := range recs {
		// As from Savepoint.EachBorrowed: the record and its bytes are
		// read over once Import returns.
		c, scribble := borrowed(r.r)
		must(t, im.Import(r.owner, c))
		scribble()
	}
	rep, err := im.Close()
	must(t, err)
	if len(rep.NotRestored) != 0 {
		t.Fatalf("not restored: %v", rep.NotRestored)
	}
	return db
}

// borrowed returns a copy of r whose byte fields are its own, and a
// function that overwrites them.
func borrowed(r savepoint.Record) (savepoint.Record, func()) {
	v := reflect.New(reflect.TypeOf(r).Elem())
	v.Elem().Set(reflect.ValueOf(r).Elem())
	var fields [][]byte
	for i := 0; i < v.Elem().NumField(); i++ {
		if f := v.Elem().Field(i); f.Type() == reflect.TypeOf([]byte(nil)) && f.Len() > 0 {
			b := bytes.Clone(f.Bytes())
			f.SetBytes(b)
			fields = append(fields, b)
		}
	}
	return v.Interface().(savepoint.Record), func() {
		for _, b := range fields {
			for i := range b {
				b[i] = 0xEE
			}
		}
		v.Elem().SetZero() // the record itself is read over too
	}
}

// checkOrder checks that each owner's keyed records ascend by key group.
func checkOrder(t *testing.T, recs []rec) {
	t.Helper()
	last := map[Owner]int{}
	for _, r := range recs {
		kg, keyed := keyGroupOf(r.r)
		if !keyed {
			continue
		}
		if kg < last[r.owner] {
			t.Fatalf("%s: key group %d after %d", r.owner, kg, last[r.owner])
		}
		last[r.owner] = kg
	}
}

var splits = [][]int{{0, maxP}, {0, 3, maxP}, {0, 3, 5, maxP}}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(*testing.T, *state.DB)
		group *Group
		shows []string // what the view of every key group must show
	}{
		{"sdk", buildSDK, nil, []string{`e1/bag="abcd"`, `e7/count="new"`, `seen keys="k1k2"`, `seen[k2]="v2v3"`,
			`set[e1]=""`, "Family:flush", "Family:poll", "Domain:8", "min hold 800 true"}},
		{"buffer", buildBuffer, bufGroup, []string{"pairs", "Timestamp:8"}},
		{"triggered", buildTriggered, trigGroup, []string{`g/t="\x01\x02\x03"`, "Family:wake", "Family:end"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := openDB(t)
			tc.build(t, src)
			s := source
			s.Group = tc.group
			recs := export(t, src, s)
			checkOrder(t, recs)
			want := make([]string, maxP)
			for kg := range want {
				want[kg] = view(t, src, kg)
				for _, s := range tc.shows {
					if !strings.Contains(want[kg], s) {
						t.Fatalf("the view of key group %d lacks %s:\n%s", kg, s, want[kg])
					}
				}
			}
			wantSide, wantParked := unkeyedView(t, src)
			for _, split := range splits {
				parts := len(split) - 1
				var parked []string
				for p := 0; p < parts; p++ {
					lo, hi := split[p], split[p+1]
					db := importAll(t, recs, lo, hi, target(tc.group, parts, p))
					for kg := 0; kg < maxP; kg++ {
						got := view(t, db, kg)
						if kg < lo || kg >= hi {
							if got != view(t, openDB(t), kg) {
								t.Errorf("split %v: key group %d imported outside [%d, %d):\n%s", split, kg, lo, hi, got)
							}
							continue
						}
						if got != want[kg] {
							t.Errorf("split %v: key group %d:\ngot  %s\nwant %s", split, kg, got, want[kg])
						}
					}
					side, p := unkeyedView(t, db)
					if side != wantSide {
						t.Errorf("split %v: side inputs:\ngot  %s\nwant %s", split, side, wantSide)
					}
					if parts == 1 {
						parked = p
					} else if len(p) > 0 {
						parked = append(parked, p[1:]...) // bounds differ by part
					}
				}
				if parts == 1 {
					if fmt.Sprint(parked) != fmt.Sprint(wantParked) {
						t.Errorf("parked: got %q, want %q", parked, wantParked)
					}
					continue
				}
				w := append([]string(nil), wantParked[min(1, len(wantParked)):]...)
				sort.Strings(w)
				sort.Strings(parked)
				if fmt.Sprint(parked) != fmt.Sprint(w) {
					t.Errorf("split %v: parked: got %q, want each of %q once", split, parked, w)
				}
			}
		})
	}
}

func TestExportUnmapped(t *testing.T) {
	src := openDB(t)
	buildSDK(t, src)
	s := source
	s.Names = func(id string) (string, bool) { return nameA, id == trA }
	err := Export(src, 0, maxP, s, func(Owner, savepoint.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), `"e7"`) {
		t.Fatalf("Export = %v, want an error naming transform ID e7", err)
	}
	s = source
	s.SideInput = nil
	if err := Export(src, 0, maxP, s, func(Owner, savepoint.Record) error { return nil }); err == nil || !strings.Contains(err.Error(), "side input 0") {
		t.Fatalf("Export = %v, want an error naming side input 0", err)
	}
	sinkErr := errors.New("disk full")
	if err := Export(src, 0, maxP, source, func(Owner, savepoint.Record) error { return sinkErr }); !errors.Is(err, sinkErr) {
		t.Fatalf("Export = %v, want the sink's error", err)
	}
}

func TestImportNotRestored(t *testing.T) {
	src := openDB(t)
	buildSDK(t, src)
	recs := export(t, src, source)
	tg := target(nil, 1, 0)
	tg.Transforms = func(n string) (string, bool) { return trA, n == nameA }
	im, err := NewImporter(openDB(t), 0, maxP, tg)
	must(t, err)
	var got error
	for _, r := range recs {
		if got = im.Import(r.owner, r.r); got != nil {
			break
		}
	}
	if !errors.Is(got, ErrNotRestored) || !strings.Contains(got.Error(), `"count/Other"`) {
		t.Fatalf("Import = %v, want ErrNotRestored naming count/Other", got)
	}
	im.Abort()

	tg.AllowNonRestored = true
	tg.StateKind = func(n, id string) (savepoint.StateKind, bool) {
		k, ok := kinds[n+"/"+id]
		return k, ok && id != "list"
	}
	db := openDB(t)
	im, err = NewImporter(db, 0, maxP, tg)
	must(t, err)
	for _, r := range recs {
		must(t, im.Import(r.owner, r.r))
	}
	rep, err := im.Close()
	must(t, err)
	names := rep.NotRestoredNames()
	want := []string{`state "list" of transform "count/Stateful"`, `transform "count/Other"`}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("not restored %q, want %q", names, want)
	}
	if n := rep.NotRestored[`transform "count/Other"`]; n != maxP*3 { // value, set, timer per key group
		t.Errorf("%d records of count/Other skipped, want %d", n, maxP*3)
	}
	b := db.NewBundle()
	defer b.Discard()
	if v, err := b.ReadBag(cell(2, trA, "bag", windows[0])); err != nil || string(v) != "abcd" {
		t.Errorf("bag = %q, %v after a partial restore", v, err)
	}
}

func TestImportRefuses(t *testing.T) {
	db := openDB(t)
	tg := target(trigGroup, 1, 0)
	im, err := NewImporter(db, 0, maxP, tg)
	must(t, err)
	defer im.Abort()
	for _, tc := range []struct {
		o    Owner
		r    savepoint.Record
		want string
	}{
		{Owner{savepoint.SectionGroups, nameA}, &savepoint.StateRecord{StateID: "bag"}, "outside the transforms section"},
		{Owner{savepoint.SectionGroups, nameGBK}, &savepoint.TriggerRecord{State: []byte{'x'}}, "unknown trigger state piece"},
		{Owner{savepoint.SectionGroups, nameGBK}, &savepoint.TriggerRecord{State: []byte{'t', 1}}, "malformed"},
		{Owner{savepoint.SectionTransforms, nameA}, &savepoint.TimerRecord{Domain: "wall"}, "unknown time domain"},
		{Owner{savepoint.SectionSideInputs, nameJoin}, &savepoint.SideInputRecord{SideInput: "totals", Key: []byte("k")}, "keyed run"},
		{Owner{savepoint.SectionSources, "read"}, &savepoint.ResidualRecord{}, "not state of a subtask"},
	} {
		if err := im.Import(tc.o, tc.r); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Import(%s, %T) = %v, want %q", tc.o, tc.r, err, tc.want)
		}
	}
	if _, err := NewImporter(db, 0, maxP, Target{Group: &Group{Name: "g", WindowFirst: true}}); err == nil {
		t.Error("a window-first target without MaxTimestamp was accepted")
	}
}

// TestThroughSavepoint writes the export of each DB into a real savepoint
// (one file per owner and key-group range), reads it back and imports it.
func TestThroughSavepoint(t *testing.T) {
	ctx := t.Context()
	st, err := storage.NewFile(t.TempDir())
	must(t, err)
	w, err := savepoint.Create(ctx, st, "count", "1")
	must(t, err)
	pf, err := w.Pipeline(ctx, []byte("pipeline"))
	must(t, err)
	m := &savepoint.Metadata{MaxParallelism: maxP, Parallelism: 2, Pipeline: pf}

	sdk, buf := openDB(t), openDB(t)
	buildSDK(t, sdk)
	buildBuffer(t, buf)
	s := source
	sdkRecs := export(t, sdk, s)
	s.Group = bufGroup
	bufRecs := export(t, buf, s)

	// Two subtasks at parallelism 2 each wrote their range.
	files := map[Owner][]savepoint.File{}
	for _, recs := range [][]rec{sdkRecs, bufRecs} {
		for _, kgs := range []savepoint.KeyGroupRange{{Start: 0, End: 4}, {Start: 4, End: maxP}} {
			writers := map[Owner]*savepoint.RecordWriter{}
			for _, r := range recs {
				kg, keyed := keyGroupOf(r.r)
				if !keyed && kgs.Start != 0 || keyed && (kg < kgs.Start || kg >= kgs.End) {
					continue
				}
				rw := writers[r.owner]
				if rw == nil {
					var k *savepoint.KeyGroupRange
					if keyed {
						k = &kgs
					}
					rw, err = w.File(ctx, r.owner.Section, r.owner.Name, k)
					must(t, err)
					writers[r.owner] = rw
				}
				must(t, rw.Write(r.r))
			}
			for o, rw := range writers {
				f, err := rw.Close()
				must(t, err)
				files[o] = append(files[o], f)
			}
		}
	}
	for o, fs := range files {
		switch o.Section {
		case savepoint.SectionTransforms:
			tr := savepoint.Transform{UniqueName: o.Name, Files: fs}
			for k, kind := range kinds {
				if id, ok := strings.CutPrefix(k, o.Name+"/"); ok {
					tr.States = append(tr.States, savepoint.StateSpec{ID: id, Kind: kind, KeyCoder: "c", WindowCoder: "c", ValueCoder: "c", UserKeyCoder: "c"})
				}
			}
			sort.Slice(tr.States, func(i, j int) bool { return tr.States[i].ID < tr.States[j].ID })
			tr.Timers = []savepoint.TimerFamily{{ID: "flush", Domain: savepoint.EventTime, KeyCoder: "c", WindowCoder: "c"}}
			if o.Name == nameA {
				tr.Timers = append(tr.Timers, savepoint.TimerFamily{ID: "poll", Domain: savepoint.ProcessingTime, KeyCoder: "c", WindowCoder: "c"})
			}
			m.Transforms = append(m.Transforms, tr)
		case savepoint.SectionGroups:
			m.Groups = append(m.Groups, savepoint.Group{UniqueName: o.Name, KeyCoder: "c", ValueCoder: "c", WindowCoder: "c", Files: fs})
		case savepoint.SectionSideInputs:
			m.SideInputs = append(m.SideInputs, savepoint.SideInputs{UniqueName: o.Name, InputCoder: "c", Files: fs, Inputs: []savepoint.SideInputSpec{
				{ID: "lookup", Kind: savepoint.SideMultimap, KeyCoder: "c", ValueCoder: "c", WindowCoder: "c"},
				{ID: "totals", Kind: savepoint.SideIterable, ValueCoder: "c", WindowCoder: "c"},
			}})
		}
	}
	sort.Slice(m.Transforms, func(i, j int) bool { return m.Transforms[i].UniqueName < m.Transforms[j].UniqueName })
	must(t, w.Commit(ctx, m))

	sp, err := savepoint.Open(ctx, st, w.Dir())
	must(t, err)
	read := func(sec savepoint.Section, name string, fs []savepoint.File) []rec {
		var out []rec
		for _, f := range fs {
			rr, err := sp.Records(ctx, f.Path)
			must(t, err)
			for rr.Next() {
				out = append(out, rec{Owner{sec, name}, rr.Record()})
			}
			must(t, rr.Err())
			must(t, rr.Close())
		}
		return out
	}
	md := sp.Metadata()
	var sdkBack, bufBack []rec
	for _, tr := range md.Transforms {
		sdkBack = append(sdkBack, read(savepoint.SectionTransforms, tr.UniqueName, tr.Files)...)
	}
	for _, si := range md.SideInputs {
		sdkBack = append(sdkBack, read(savepoint.SectionSideInputs, si.UniqueName, si.Files)...)
	}
	for _, g := range md.Groups {
		bufBack = append(bufBack, read(savepoint.SectionGroups, g.UniqueName, g.Files)...)
	}
	// Restore at parallelism 3.
	for _, c := range []struct {
		src  *state.DB
		recs []rec
		g    *Group
	}{{sdk, sdkBack, nil}, {buf, bufBack, bufGroup}} {
		for p := 0; p < 3; p++ {
			lo, hi := state.KeyGroupRange(p, 3, maxP)
			db := importAll(t, c.recs, lo, hi, target(c.g, 3, p))
			for kg := lo; kg < hi; kg++ {
				if got, want := view(t, db, kg), view(t, c.src, kg); got != want {
					t.Errorf("key group %d through a savepoint:\ngot  %s\nwant %s", kg, got, want)
				}
			}
		}
	}
}

func keyGroupOf(r savepoint.Record) (int, bool) {
	switch x := r.(type) {
	case *savepoint.StateRecord:
		return x.KeyGroup, true
	case *savepoint.TimerRecord:
		return x.KeyGroup, true
	case *savepoint.GroupValueRecord:
		return x.KeyGroup, true
	case *savepoint.TriggerRecord:
		return x.KeyGroup, true
	}
	return 0, false
}
