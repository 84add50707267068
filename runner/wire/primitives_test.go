package wire

import (
	"bytes"
	"errors"
	"math"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
)

func TestConstantsMatchBeam(t *testing.T) {
	if MinTimestamp != int64(mtime.MinTimestamp) || MaxTimestamp != int64(mtime.MaxTimestamp) ||
		EndOfGlobalWindow != int64(mtime.EndOfGlobalWindowTime) {
		t.Errorf("timestamps %d %d %d differ from mtime", MinTimestamp, MaxTimestamp, EndOfGlobalWindow)
	}
	if Early != Timing(typex.PaneEarly) || OnTime != Timing(typex.PaneOnTime) ||
		Late != Timing(typex.PaneLate) || Unknown != Timing(typex.PaneUnknown) {
		t.Error("timings differ from typex")
	}
	var buf bytes.Buffer
	if err := coder.EncodePane(typex.NoFiringPane(), &buf); err != nil || !bytes.Equal(buf.Bytes(), PaneNoFiring) {
		t.Errorf("PaneNoFiring = %x, Beam writes %x (%v)", PaneNoFiring, buf.Bytes(), err)
	}
	gw, err := exec.EncodeWindow(exec.MakeWindowEncoder(coder.NewGlobalWindow()), window.GlobalWindow{})
	if err != nil || !bytes.Equal(gw, GlobalWindow()) || GlobalWindow() == nil {
		t.Errorf("GlobalWindow() = %x, Beam writes %x (%v)", GlobalWindow(), gw, err)
	}
}

func TestVarintMatchesBeam(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 300, 1<<32 - 1, 1 << 35, math.MaxInt64, math.MaxUint64} {
		var buf bytes.Buffer
		if err := coder.EncodeVarUint64(v, &buf); err != nil {
			t.Fatal(err)
		}
		if got := AppendVarint([]byte{9}, v); !bytes.Equal(got[1:], buf.Bytes()) || got[0] != 9 {
			t.Errorf("AppendVarint(%d) = %x, Beam %x", v, got[1:], buf.Bytes())
		}
		got, n, err := ReadVarint(append(buf.Bytes(), 0x55))
		if err != nil || got != v || n != buf.Len() {
			t.Errorf("ReadVarint(%x) = %d, %d, %v", buf.Bytes(), got, n, err)
		}
	}
	for _, bad := range [][]byte{
		bytes.Repeat([]byte{0xff}, 10), // 70 bits
		append(bytes.Repeat([]byte{0x80}, 9), 0x02),
	} {
		_, beamErr := coder.DecodeVarUint64(bytes.NewReader(append(bad, 0)))
		if _, _, err := ReadVarint(append(bad, 0)); !errors.Is(err, ErrCorrupt) || beamErr == nil {
			t.Errorf("ReadVarint(%x) err = %v (Beam: %v), want both to fail", bad, err, beamErr)
		}
	}
	if _, _, err := ReadVarint([]byte{0x80, 0x80}); !errors.Is(err, ErrTruncated) {
		t.Errorf("truncated varint err = %v", err)
	}
}

func TestInstantMatchesBeam(t *testing.T) {
	var prev []byte
	for _, ms := range []int64{MinTimestamp, -1 << 40, -1, 0, 1, 1700000000000, EndOfGlobalWindow, MaxTimestamp} {
		var buf bytes.Buffer
		if err := coder.EncodeEventTime(typex.EventTime(ms), &buf); err != nil {
			t.Fatal(err)
		}
		got := AppendInstant(nil, ms)
		if !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("AppendInstant(%d) = %x, Beam %x", ms, got, buf.Bytes())
		}
		if back, err := ReadInstant(got); err != nil || back != ms {
			t.Errorf("ReadInstant(%x) = %d, %v", got, back, err)
		}
		if prev != nil && bytes.Compare(prev, got) >= 0 {
			t.Errorf("instant %d does not sort after the previous one", ms)
		}
		prev = got
	}
	if _, err := ReadInstant(make([]byte, 7)); !errors.Is(err, ErrTruncated) {
		t.Errorf("short instant err = %v", err)
	}
}

func TestIntervalWindowMatchesBeam(t *testing.T) {
	enc := exec.MakeWindowEncoder(coder.NewIntervalWindow())
	dec := exec.MakeWindowDecoder(coder.NewIntervalWindow())
	wc := &Coder{URN: URNIntervalWindow}
	for _, w := range [][2]int64{{0, 1}, {-100, 100}, {1700000000000, 1700000060000}, {MinTimestamp, EndOfGlobalWindow + 1}} {
		want, err := exec.EncodeWindow(enc, iw(w[0], w[1]))
		if err != nil {
			t.Fatal(err)
		}
		got := AppendIntervalWindow(nil, w[0], w[1])
		if !bytes.Equal(got, want) {
			t.Errorf("AppendIntervalWindow(%v) = %x, Beam %x", w, got, want)
		}
		bw, err := dec.DecodeSingle(bytes.NewReader(got))
		if err != nil || bw != iw(w[0], w[1]) {
			t.Errorf("Beam decoded %v, %v; want %v", bw, err, w)
		}
		s, e, err := ReadIntervalWindow(want)
		if err != nil || s != w[0] || e != w[1] {
			t.Errorf("ReadIntervalWindow = %d, %d, %v; want %v", s, e, err, w)
		}
		mt, err := WindowMaxTimestamp(wc, want)
		if err != nil || mt != int64(iw(w[0], w[1]).MaxTimestamp()) {
			t.Errorf("WindowMaxTimestamp = %d, %v; Beam %d", mt, err, iw(w[0], w[1]).MaxTimestamp())
		}
	}
	if mt, err := WindowMaxTimestamp(&Coder{URN: URNGlobalWindow}, GlobalWindow()); err != nil ||
		mt != int64(window.GlobalWindow{}.MaxTimestamp()) {
		t.Errorf("global WindowMaxTimestamp = %d, %v", mt, err)
	}
	if _, err := WindowMaxTimestamp(&Coder{URN: URNLengthPrefix}, []byte{0}); !errors.Is(err, ErrNotWalkable) {
		t.Errorf("WindowMaxTimestamp of an opaque window: err = %v", err)
	}
	if _, _, err := ReadIntervalWindow(make([]byte, 8)); !errors.Is(err, ErrTruncated) {
		t.Errorf("ReadIntervalWindow without duration: err = %v", err)
	}
}

func TestPaneMatchesBeam(t *testing.T) {
	panes := []typex.PaneInfo{
		typex.NoFiringPane(),
		{IsFirst: true, Timing: typex.PaneEarly, Index: 0, NonSpeculativeIndex: -1},
		{Timing: typex.PaneEarly, Index: 5, NonSpeculativeIndex: -1},
		{IsFirst: true, IsLast: true, Timing: typex.PaneOnTime, Index: 0, NonSpeculativeIndex: 0},
		{Timing: typex.PaneOnTime, Index: 3, NonSpeculativeIndex: 3},
		{Timing: typex.PaneOnTime, Index: 3, NonSpeculativeIndex: 0},
		{IsLast: true, Timing: typex.PaneLate, Index: 300, NonSpeculativeIndex: 200},
		{Timing: typex.PaneLate, Index: 1 << 40, NonSpeculativeIndex: 1 << 40},
	}
	for _, bp := range panes {
		var buf bytes.Buffer
		if err := coder.EncodePane(bp, &buf); err != nil {
			t.Fatal(err)
		}
		p := Pane{IsFirst: bp.IsFirst, IsLast: bp.IsLast, Timing: Timing(bp.Timing), Index: bp.Index, OnTimeIndex: bp.NonSpeculativeIndex}
		if got := AppendPane(nil, p); !bytes.Equal(got, buf.Bytes()) {
			t.Errorf("AppendPane(%+v) = %x, Beam %x", p, got, buf.Bytes())
		}
		got, n, err := ReadPane(append(buf.Bytes(), 0xee))
		if err != nil || n != buf.Len() || got != p {
			t.Errorf("ReadPane(%x) = %+v, %d, %v; want %+v", buf.Bytes(), got, n, err, p)
		}
		back, err := coder.DecodePane(bytes.NewReader(AppendPane(nil, p)))
		if err != nil || back != bp {
			t.Errorf("Beam decoded %+v, %v; want %+v", back, err, bp)
		}
	}
	// UNKNOWN panes lose their indexes, as in Beam.
	if got := AppendPane(nil, Pane{Timing: Unknown, Index: 4, OnTimeIndex: 4}); len(got) != 1 {
		t.Errorf("unknown pane with index encoded as %x", got)
	}
	if _, _, err := ReadPane([]byte{0x3f}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("pane encoding 3: err = %v", err)
	}
	for _, short := range [][]byte{nil, {0x10}, {0x20, 1}} {
		if _, _, err := ReadPane(short); !errors.Is(err, ErrTruncated) {
			t.Errorf("ReadPane(%x) err = %v, want ErrTruncated", short, err)
		}
	}
	if Late.String() != "LATE" || Timing(9).String() != "Timing(9)" {
		t.Error("Timing.String")
	}
}
