package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
)

// wvCase is a windowed value coder and values to encode with it.
type wvCase struct {
	name   string
	c      *coder.Coder
	values []*exec.FullValue
}

func wvCases() []wvCase {
	str, vi := coder.NewString(), coder.NewVarInt()
	ontime := typex.PaneInfo{IsLast: true, Timing: typex.PaneOnTime, Index: 2, NonSpeculativeIndex: 2}
	late := typex.PaneInfo{Timing: typex.PaneLate, Index: 9, NonSpeculativeIndex: 4}
	early := typex.PaneInfo{IsFirst: true, Timing: typex.PaneEarly, Index: 0, NonSpeculativeIndex: -1}
	return []wvCase{
		{"global/kv", coder.NewW(kvC(str, vi), coder.NewGlobalWindow()), []*exec.FullValue{
			{Elm: "a", Elm2: int64(1), Timestamp: typex.EventTime(MinTimestamp), Windows: window.SingleGlobalWindow, Pane: typex.NoFiringPane()},
			{Elm: "", Elm2: int64(-7), Timestamp: 0, Windows: window.SingleGlobalWindow, Pane: early},
			{Elm: "ccc", Elm2: int64(1 << 40), Timestamp: typex.EventTime(EndOfGlobalWindow), Windows: window.SingleGlobalWindow, Pane: ontime},
		}},
		{"interval/bytes", coder.NewW(coder.NewBytes(), coder.NewIntervalWindow()), []*exec.FullValue{
			{Elm: []byte("x"), Timestamp: 5, Windows: []typex.Window{iw(0, 10)}, Pane: typex.NoFiringPane()},
			{Elm: []byte{}, Timestamp: -3, Windows: []typex.Window{iw(-10, 0), iw(-5, 5), iw(-3, 7)}, Pane: late},
			{Elm: bytes.Repeat([]byte{1}, 200), Timestamp: 1700000000000, Windows: []typex.Window{}, Pane: ontime},
		}},
		{"interval/custom", coder.NewW(kvC(str, coder.NewI(vi)), coder.NewIntervalWindow()), []*exec.FullValue{
			{Elm: "k", Elm2: []int64{1, 2, 3}, Timestamp: 59999, Windows: []typex.Window{iw(0, 60000)}, Pane: typex.NoFiringPane()},
		}},
	}
}

func TestWVNextMatchesBeam(t *testing.T) {
	for _, tc := range wvCases() {
		t.Run(tc.name, func(t *testing.T) {
			wv, err := NewWV(build(t, tc.c))
			if err != nil {
				t.Fatal(err)
			}
			winEnc := exec.MakeWindowEncoder(tc.c.Window)
			var all []byte
			var encs [][]byte
			for _, v := range tc.values {
				enc := beamEncode(t, tc.c, v)
				encs = append(encs, enc)
				all = append(all, enc...)
			}
			i := 0
			err = wv.ForEach(all, func(e Element) error {
				v := tc.values[i]
				if !bytes.Equal(e.Raw, encs[i]) {
					t.Errorf("%d: Raw = %x, want %x", i, e.Raw, encs[i])
				}
				if e.Timestamp != int64(v.Timestamp) {
					t.Errorf("%d: Timestamp = %d, want %d", i, e.Timestamp, v.Timestamp)
				}
				if len(e.Windows) != len(v.Windows) {
					t.Fatalf("%d: %d windows, want %d", i, len(e.Windows), len(v.Windows))
				}
				for j, w := range v.Windows {
					want, _ := exec.EncodeWindow(winEnc, w)
					if !bytes.Equal(e.Windows[j], want) {
						t.Errorf("%d: window %d = %x, want %x", i, j, e.Windows[j], want)
					}
				}
				var pane bytes.Buffer
				_ = coder.EncodePane(v.Pane, &pane)
				if !bytes.Equal(e.Pane, pane.Bytes()) {
					t.Errorf("%d: Pane = %x, want %x", i, e.Pane, pane.Bytes())
				}
				value := beamEncode(t, tc.c.Components[0], &exec.FullValue{Elm: v.Elm, Elm2: v.Elm2})
				if !bytes.Equal(e.Value, value) {
					t.Errorf("%d: Value = %x, want %x", i, e.Value, value)
				}
				// Writing the parts back gives Beam's bytes.
				if got := AppendWindowedValue(nil, e.Timestamp, e.Windows, e.Pane, e.Value); !bytes.Equal(got, encs[i]) {
					t.Errorf("%d: AppendWindowedValue = %x, want %x", i, got, encs[i])
				}
				i++
				return nil
			})
			if err != nil || i != len(tc.values) {
				t.Fatalf("ForEach: %v after %d elements", err, i)
			}
			for k := range all {
				if k == 0 || k == len(encs[0]) {
					continue // whole elements
				}
				if _, _, err := wv.Next(all[:k]); k < len(encs[0]) && !errors.Is(err, ErrTruncated) {
					t.Errorf("Next(all[:%d]) err = %v, want ErrTruncated", k, err)
				}
			}
		})
	}
}

// TestAppendWindowedValueDecodes builds windowed values from parts and
// decodes them with Beam.
func TestAppendWindowedValueDecodes(t *testing.T) {
	c := coder.NewW(coder.NewString(), coder.NewIntervalWindow())
	dec := exec.MakeElementDecoder(c)
	val := beamEncode(t, coder.NewString(), fv("hello"))
	pane := AppendPane(nil, Pane{Timing: Late, Index: 3, OnTimeIndex: 1})
	windows := [][]byte{AppendIntervalWindow(nil, 0, 10), AppendIntervalWindow(nil, 5, 15)}
	b := AppendWindowedValue(nil, 7, windows, pane, val)
	b = AppendWindowedValue(b, 9, windows[:1], nil, val)
	r := bytes.NewReader(b)
	got, err := dec.Decode(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Elm != "hello" || got.Timestamp != 7 || len(got.Windows) != 2 || got.Windows[1] != iw(5, 15) ||
		got.Pane != (typex.PaneInfo{Timing: typex.PaneLate, Index: 3, NonSpeculativeIndex: 1}) {
		t.Errorf("Beam decoded %+v", got)
	}
	got, err = dec.Decode(r)
	if err != nil || got.Timestamp != 9 || got.Pane != typex.NoFiringPane() || r.Len() != 0 {
		t.Errorf("Beam decoded %+v, %v with %d left", got, err, r.Len())
	}

	gc := coder.NewW(coder.NewBytes(), coder.NewGlobalWindow())
	gb := AppendWindowedValue(nil, 0, [][]byte{GlobalWindow()}, PaneNoFiring, []byte{1, 'z'})
	if want := beamEncode(t, gc, &exec.FullValue{Elm: []byte("z"), Windows: window.SingleGlobalWindow, Pane: typex.NoFiringPane()}); !bytes.Equal(gb, want) {
		t.Errorf("global AppendWindowedValue = %x, Beam %x", gb, want)
	}
}

func TestNewWVRejects(t *testing.T) {
	for _, c := range []*Coder{nil, {URN: URNKV}, {URN: URNWindowedValue}, {URN: URNParamWindowedValue, Components: []*Coder{{URN: URNBytes}, {URN: URNGlobalWindow}}}} {
		if _, err := NewWV(c); err == nil {
			t.Errorf("NewWV(%v) succeeded", c)
		}
	}
	if _, _, err := (WVCoder{}).Next([]byte{1}); err == nil {
		t.Error("zero WVCoder Next succeeded")
	}
	wv := WVCoder{Elem: &Coder{URN: URNBytes}, Window: &Coder{URN: URNGlobalWindow}}
	neg := append(AppendInstant(nil, 0), 0xff, 0xff, 0xff, 0xff, 0x0f, 0)
	if _, _, err := wv.Next(neg); !errors.Is(err, ErrCorrupt) {
		t.Errorf("negative window count: err = %v", err)
	}
	stop := errors.New("stop")
	one := AppendWindowedValue(nil, 0, [][]byte{GlobalWindow()}, nil, []byte{0})
	if err := wv.ForEach(append(one, one...), func(Element) error { return stop }); err != stop {
		t.Errorf("ForEach returned %v, want fn's error", err)
	}
}
