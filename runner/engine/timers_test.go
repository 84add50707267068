package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"testing"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// Beam timer coders: string keys in interval windows, and varint keys in
// the global window.
var (
	iwTimerCoder = coder.NewT(coder.NewString(), coder.NewIntervalWindow())
	gwTimerCoder = coder.NewT(coder.NewVarInt(), coder.NewGlobalWindow())
)

var (
	famF  = harness.TimerKey{Transform: "pardo", Family: "f"}
	famG  = harness.TimerKey{Transform: "pardo", Family: "g"}
	famT2 = harness.TimerKey{Transform: "pardo2", Family: "f"}
	famGW = harness.TimerKey{Transform: "pardo3", Family: "gw"}
)

// newTestKeyed builds the keyed part of a stateful stage with families f and
// g of pardo and f of pardo2 (iwTimerCoder) and gw of pardo3 (gwTimerCoder),
// marshalled by Beam.
func newTestKeyed(t testing.TB, db *state.DB) *keyed {
	t.Helper()
	ids, coders, err := graphx.MarshalCoders([]*coder.Coder{iwTimerCoder, gwTimerCoder})
	if err != nil {
		t.Fatal(err)
	}
	s := &plan.Stage{ID: "s", Timers: []plan.TimerFamily{
		{Transform: famF.Transform, Family: famF.Family, Coder: ids[0]},
		{Transform: famG.Transform, Family: famG.Family, Coder: ids[0]},
		{Transform: famT2.Transform, Family: famT2.Family, Coder: ids[0]},
		{Transform: famGW.Transform, Family: famGW.Family, Coder: ids[1]},
	}}
	k, err := newKeyed(db, s, &pipepb.Components{Coders: coders}, 0, testMaxP, testMaxP)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func beamWin(start, end int64) typex.Window {
	return window.IntervalWindow{Start: mtime.FromMilliseconds(start), End: mtime.FromMilliseconds(end)}
}

// tm describes a timer as an SDK sets or clears it.
type tm struct {
	key     string
	tag     string
	windows [][2]int64
	clear   bool
	fire    int64
	hold    int64
}

func (x tm) recv() exec.TimerRecv {
	var ws []typex.Window
	for _, w := range x.windows {
		ws = append(ws, beamWin(w[0], w[1]))
	}
	return exec.TimerRecv{
		Key:     &exec.FullValue{Elm: x.key},
		Windows: ws,
		Pane:    typex.PaneInfo{IsFirst: true, IsLast: true, Timing: typex.PaneOnTime},
		TimerMap: timers.TimerMap{Tag: x.tag, Clear: x.clear,
			FireTimestamp: mtime.FromMilliseconds(x.fire), HoldTimestamp: mtime.FromMilliseconds(x.hold)},
	}
}

// encodeTimer encodes a timer with Beam's own timer encoder.
func encodeTimer(t testing.TB, c *coder.Coder, r exec.TimerRecv) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := exec.MakeElementEncoder(c).Encode(&exec.FullValue{Elm: r}, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func enc(t testing.TB, timers ...tm) []byte {
	t.Helper()
	var out []byte
	for _, x := range timers {
		out = append(out, encodeTimer(t, iwTimerCoder, x.recv())...)
	}
	return out
}

// due lists every timer set in b, as "transform/family key window tag@fire",
// in DueTimers order.
func due(t *testing.T, b *state.Bundle, upTo int64) []string {
	t.Helper()
	ts, err := b.DueTimers(0, testMaxP, upTo, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range ts {
		out = append(out, describeTimer(t, x))
	}
	return out
}

func describeTimer(t *testing.T, x state.Timer) string {
	t.Helper()
	key, rest := readStr(t, x.Key)
	if len(rest) != 0 {
		t.Errorf("timer key %x has trailing bytes", x.Key)
	}
	if x.KeyGroup != state.KeyGroup(x.Key, testMaxP) {
		t.Errorf("timer of key %q in key group %d, want %d", key, x.KeyGroup, state.KeyGroup(x.Key, testMaxP))
	}
	// The stored encoding is what the SDK sent: Beam decodes it to the same
	// key, tag and fire time.
	fv, err := exec.MakeElementDecoder(iwTimerCoder).Decode(bytes.NewReader(x.Encoded))
	if err != nil {
		t.Fatalf("Beam cannot decode the stored timer %x: %v", x.Encoded, err)
	}
	r := fv.Elm.(exec.TimerRecv)
	if r.Key.Elm != key || r.Tag != string(x.Tag) || r.FireTimestamp.Milliseconds() != x.Fire || r.Clear {
		t.Errorf("stored encoding decodes to key %v tag %q fire %d clear %v; index says key %q tag %q fire %d",
			r.Key.Elm, r.Tag, r.FireTimestamp.Milliseconds(), r.Clear, key, x.Tag, x.Fire)
	}
	return fmt.Sprintf("%s/%s %s %s %q@%d", x.Transform, x.Family, key, winString(t, x.Window), x.Tag, x.Fire)
}

func sorted(s []string) []string { slices.Sort(s); return s }

func checkDue(t *testing.T, got []string, want ...string) {
	t.Helper()
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Errorf("due timers:\n  %q\nwant:\n  %q", got, want)
	}
}

func TestApplyTimersSetInFireOrder(t *testing.T) {
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	err := k.applyTimers(b, map[harness.TimerKey][]byte{
		famF: enc(t,
			tm{key: "k", windows: [][2]int64{{0, 10}}, fire: 9, hold: 9},
			tm{key: "k", windows: [][2]int64{{10, 20}}, fire: 19, hold: 10},
			tm{key: "k", tag: "x", windows: [][2]int64{{20, 30}}, fire: 5, hold: 5},
			tm{key: "k", tag: "y", windows: [][2]int64{{20, 30}}, fire: 25},
		),
		famG:  enc(t, tm{key: "k", windows: [][2]int64{{0, 10}}, fire: 7}),
		famT2: enc(t, tm{key: "k", windows: [][2]int64{{0, 10}}, fire: -100}),
	})
	if err != nil {
		t.Fatal(err)
	}
	all := []string{
		`pardo2/f k [0,10) ""@-100`,
		`pardo/f k [20,30) "x"@5`,
		`pardo/g k [0,10) ""@7`,
		`pardo/f k [0,10) ""@9`,
		`pardo/f k [10,20) ""@19`,
		`pardo/f k [20,30) "y"@25`,
	}
	checkDue(t, due(t, b, mtime.MaxTimestamp.Milliseconds()), all...)
	checkDue(t, due(t, b, 9), all[:4]...) // fire time up to and including 9
	checkDue(t, due(t, b, 8), all[:3]...) // not 9
	checkDue(t, due(t, b, -101))          // none yet
	limited, err := b.DueTimers(0, testMaxP, 100, 2)
	if err != nil || len(limited) != 2 {
		t.Errorf("DueTimers with limit 2 returned %d timers, %v", len(limited), err)
	}
}

func TestApplyTimersReplaceAndClear(t *testing.T) {
	db := openDB(t)
	k := newTestKeyed(t, db)
	w0, w1 := [][2]int64{{0, 10}}, [][2]int64{{10, 20}}

	b := db.NewBundle()
	must := func(data []byte) {
		t.Helper()
		if err := k.applyTimers(b, map[harness.TimerKey][]byte{famF: data}); err != nil {
			t.Fatal(err)
		}
	}
	// In one bundle: set, then set again later and earlier; the last wins.
	must(enc(t, tm{key: "k", windows: w0, fire: 9}, tm{key: "k", windows: w1, fire: 19}))
	must(enc(t, tm{key: "k", windows: w0, fire: 30}))
	must(enc(t, tm{key: "k", windows: w0, fire: 3}))
	checkDue(t, due(t, b, 100), `pardo/f k [0,10) ""@3`, `pardo/f k [10,20) ""@19`)
	// A cleared timer that was never set is fine.
	must(enc(t, tm{key: "other", windows: w0, clear: true}))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}

	// In the next bundle: replace w1, clear w0; a clear and a set of one
	// timer in one stream apply in order.
	b = db.NewBundle()
	must(enc(t, tm{key: "k", windows: w1, fire: 12}, tm{key: "k", windows: w0, clear: true}))
	must(enc(t, tm{key: "j", windows: w0, clear: true}, tm{key: "j", windows: w0, fire: 1}))
	must(enc(t, tm{key: "i", windows: w0, fire: 2}, tm{key: "i", windows: w0, clear: true}))
	// j and k are in different key groups: order only holds within one.
	checkDue(t, sorted(due(t, b, 100)), `pardo/f j [0,10) ""@1`, `pardo/f k [10,20) ""@12`)
	b.Discard()

	// The discarded bundle changed nothing.
	b = db.NewBundle()
	checkDue(t, due(t, b, 100), `pardo/f k [0,10) ""@3`, `pardo/f k [10,20) ""@19`)
	must(enc(t, tm{key: "k", windows: w0, clear: true}, tm{key: "k", windows: w1, clear: true}))
	checkDue(t, due(t, b, 100))
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b = db.NewBundle()
	defer b.Discard()
	checkDue(t, due(t, b, wmMax()))
}

func wmMax() int64 { return mtime.MaxTimestamp.Milliseconds() }

func TestApplyTimerSeveralWindows(t *testing.T) {
	// One timer naming two windows is set (and cleared) in each.
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	two := [][2]int64{{0, 10}, {5, 15}}
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{famF: enc(t, tm{key: "k", windows: two, fire: 8})}); err != nil {
		t.Fatal(err)
	}
	checkDue(t, due(t, b, wmMax()), `pardo/f k [0,10) ""@8`, `pardo/f k [5,15) ""@8`)
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{famF: enc(t, tm{key: "k", windows: two, clear: true})}); err != nil {
		t.Fatal(err)
	}
	checkDue(t, due(t, b, wmMax()))
}

func TestApplyTimersKeyGroups(t *testing.T) {
	// Timers of many keys land in their keys' key groups; a key-group range
	// returns only its own, earliest first within each key group.
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	var data []byte
	for i := range 40 {
		data = append(data, enc(t, tm{key: fmt.Sprintf("key%d", i), windows: [][2]int64{{0, 100}}, fire: int64(40 - i)})...)
	}
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{famF: data}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range [][2]int{{0, 43}, {43, 86}, {86, 128}} {
		ts, err := b.DueTimers(r[0], r[1], wmMax(), 1000)
		if err != nil {
			t.Fatal(err)
		}
		total += len(ts)
		for i, x := range ts {
			if x.KeyGroup < r[0] || x.KeyGroup >= r[1] {
				t.Errorf("range %v returned a timer of key group %d", r, x.KeyGroup)
			}
			if i > 0 && x.KeyGroup == ts[i-1].KeyGroup && x.Fire < ts[i-1].Fire {
				t.Errorf("key group %d: fire %d after %d", x.KeyGroup, x.Fire, ts[i-1].Fire)
			}
			if i > 0 && x.KeyGroup < ts[i-1].KeyGroup {
				t.Errorf("key groups out of order: %d after %d", x.KeyGroup, ts[i-1].KeyGroup)
			}
			describeTimer(t, x)
		}
	}
	if total != 40 {
		t.Errorf("ranges hold %d timers, want 40", total)
	}
}

func TestApplyTimersGlobalWindow(t *testing.T) {
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	r := exec.TimerRecv{Key: &exec.FullValue{Elm: int64(42)}, Windows: window.SingleGlobalWindow,
		Pane: typex.NoFiringPane(), TimerMap: timers.TimerMap{Tag: "t", FireTimestamp: 77, HoldTimestamp: 77}}
	data := encodeTimer(t, gwTimerCoder, r)
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{famGW: append(append([]byte{}, data...), data...)}); err != nil {
		t.Fatal(err)
	}
	ts, err := b.DueTimers(0, testMaxP, wmMax(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 1 || ts[0].Fire != 77 || len(ts[0].Window) != 0 || string(ts[0].Tag) != "t" ||
		!bytes.Equal(ts[0].Key, []byte{42}) || !bytes.Equal(ts[0].Encoded, data) || ts[0].Family != "gw" {
		t.Errorf("global window timer set twice: %+v", ts)
	}
}

func TestApplyTimersErrors(t *testing.T) {
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	unknown := harness.TimerKey{Transform: "pardo", Family: "nope"}
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{unknown: enc(t, tm{key: "k", windows: [][2]int64{{0, 1}}})}); err == nil {
		t.Error("timers of an unknown family: no error")
	}
	// Every proper prefix of a valid stream of two timers is an error (or,
	// cut exactly between the timers, the first timer alone): never a panic.
	full := enc(t, tm{key: "k", tag: "tag", windows: [][2]int64{{0, 10}, {5, 15}}, fire: 9},
		tm{key: "k2", windows: [][2]int64{{0, 10}}, clear: true})
	first := len(enc(t, tm{key: "k", tag: "tag", windows: [][2]int64{{0, 10}, {5, 15}}, fire: 9}))
	for n := 1; n < len(full); n++ {
		err := k.applyTimers(b, map[harness.TimerKey][]byte{famF: full[:n]})
		if (err == nil) != (n == first) {
			t.Errorf("prefix of %d of %d bytes: err = %v", n, len(full), err)
		}
	}
}

func TestApplyTimerHugeWindowCount(t *testing.T) {
	// A corrupt window count must be an error found before any work per
	// window: with the global window coder (0 bytes per window) a loop over
	// the count would otherwise take as long and as much memory as the
	// count says.
	db := openDB(t)
	k := newTestKeyed(t, db)
	b := db.NewBundle()
	defer b.Discard()
	data := []byte{42, 0} // key 42, empty tag
	data = binary.BigEndian.AppendUint32(data, 1<<24)
	data = append(data, 1) // cleared
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := k.applyTimers(b, map[harness.TimerKey][]byte{famGW: data})
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Error("a timer claiming 16M windows in 1 byte: no error")
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("rejecting it allocated %d MiB", alloc>>20)
	}
	// Negative counts are corrupt too.
	data = binary.BigEndian.AppendUint32([]byte{42, 0}, 0xFFFFFFFF)
	data = append(data, 1)
	if err := k.applyTimers(b, map[harness.TimerKey][]byte{famGW: data}); err == nil {
		t.Error("a timer with window count -1: no error")
	}
}

// FuzzApplyTimer feeds random bytes as a timer stream of each family:
// errors are fine, panics are not, and whatever is accepted is stored
// consistently.
func FuzzApplyTimer(f *testing.F) {
	f.Add(byte(0), enc(f, tm{key: "k", tag: "tag", windows: [][2]int64{{0, 10}, {5, 15}}, fire: 9, hold: 3}))
	f.Add(byte(0), enc(f, tm{key: "", windows: [][2]int64{{-5, 5}}, clear: true}))
	f.Add(byte(1), encodeTimer(f, gwTimerCoder, exec.TimerRecv{Key: &exec.FullValue{Elm: int64(-1)}, Windows: window.SingleGlobalWindow,
		Pane: typex.PaneInfo{Timing: typex.PaneLate, Index: 3, NonSpeculativeIndex: 2}, TimerMap: timers.TimerMap{FireTimestamp: 5}}))
	f.Add(byte(1), []byte{1, 0, 0, 0, 0, 1, 1})
	db := openDB(f)
	k := newTestKeyed(f, db)
	f.Fuzz(func(t *testing.T, fam byte, data []byte) {
		fk := famF
		if fam%2 == 1 {
			fk = famGW
		}
		b := db.NewBundle()
		defer b.Discard()
		if err := k.applyTimers(b, map[harness.TimerKey][]byte{fk: data}); err != nil {
			return
		}
		ts, err := b.DueTimers(0, testMaxP, wmMax(), 1<<20)
		if err != nil {
			t.Fatalf("accepted timers cannot be read back: %v", err)
		}
		for _, x := range ts {
			if x.Transform != fk.Transform || x.Family != fk.Family || !bytes.Contains(data, x.Key) || !bytes.Contains(data, x.Window) {
				t.Fatalf("stored timer %+v does not come from the input", x)
			}
			// Each stored timer names only its own window: applied again,
			// it sets exactly itself.
			again := db.NewBundle()
			if err := k.applyTimers(again, map[harness.TimerKey][]byte{fk: x.Encoded}); err != nil {
				again.Discard()
				t.Fatalf("stored timer %+v does not decode: %v", x, err)
			}
			back, err := again.DueTimers(0, testMaxP, wmMax(), 1<<20)
			again.Discard()
			if err != nil || len(back) != 1 || !bytes.Equal(back[0].Window, x.Window) || !bytes.Equal(back[0].Encoded, x.Encoded) {
				t.Fatalf("stored timer %+v re-applies as %+v (%v), want itself", x, back, err)
			}
		}
	})
}

// TestNoHoldIsMaxTimestamp: the engine sets timers that hold nothing with
// Beam's maximum timestamp, which the state package does not store as a hold.
func TestNoHoldIsMaxTimestamp(t *testing.T) {
	if wire.MaxTimestamp != state.NoHold {
		t.Fatalf("wire.MaxTimestamp %d != state.NoHold %d", wire.MaxTimestamp, state.NoHold)
	}
}
