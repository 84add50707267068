package wire

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
)

// fuzzCoders are the walkable trees the fuzzers pick from.
func fuzzCoders(t testing.TB) []*Coder {
	cs := []*Coder{
		{URN: URNIterable, Components: []*Coder{{URN: URNKV, Components: []*Coder{{URN: URNGlobalWindow}, {URN: URNBool}}}}},
		{URN: URNTimer, Components: []*Coder{{URN: URNLengthPrefix}, {URN: URNIntervalWindow}}},
		{URN: URNParamWindowedValue, Components: []*Coder{{URN: URNDouble}, {URN: URNGlobalWindow}}},
	}
	for _, tc := range coderCases(t) {
		cs = append(cs, build(t, tc.c))
	}
	return cs
}

func FuzzSkip(f *testing.F) {
	cs := fuzzCoders(f)
	for i, tc := range coderCases(f) {
		f.Add(uint8(i+3), beamEncode(f, tc.c, tc.v))
	}
	f.Add(uint8(0), []byte{0xff, 0xff, 0xff, 0xff, 0x85, 0x80, 0x80, 0x80, 0x08})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		c := cs[int(which)%len(cs)]
		n, err := c.Skip(data)
		if err == nil && (n < 0 || n > len(data)) {
			t.Fatalf("%v.Skip(%x) = %d, out of range", c, data, n)
		}
		if c.URN == URNKV {
			k, v, err := c.SplitKV(data)
			if err == nil && len(k)+len(v) != len(data) {
				t.Fatalf("SplitKV parts %d+%d != %d", len(k), len(v), len(data))
			}
		}
		_, _, _ = ReadPane(data)
		_, _, _ = ReadIntervalWindow(data)
		_, _, _ = ReadVarint(data)
	})
}

func FuzzWVNext(f *testing.F) {
	var wvs []WVCoder
	for i, tc := range wvCases() {
		wc := build(f, tc.c)
		wv, err := NewWV(wc)
		if err != nil {
			f.Fatal(err)
		}
		wvs = append(wvs, wv)
		var all []byte
		for _, v := range tc.values {
			all = append(all, beamEncode(f, tc.c, v)...)
		}
		f.Add(uint8(i), all)
	}
	wvs = append(wvs, WVCoder{Elem: build(f, coder.NewI(coder.NewString())), Window: &Coder{URN: URNGlobalWindow}})
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		wv := wvs[int(which)%len(wvs)]
		total := 0
		bounds := map[int]bool{0: true} // element boundaries
		_ = wv.ForEach(data, func(e Element) error {
			if len(e.Raw) == 0 || len(e.Raw) > len(data)-total {
				t.Fatalf("element of %d bytes at %d of %d", len(e.Raw), total, len(data))
			}
			total += len(e.Raw)
			bounds[total] = true
			for _, w := range e.Windows {
				_, _ = WindowMaxTimestamp(wv.Window, w)
			}
			if _, n, err := ReadPane(e.Pane); err != nil || n != len(e.Pane) {
				t.Fatalf("pane %x: %d, %v", e.Pane, n, err)
			}
			return nil
		})
		limit := int(which) * 7
		if head, rest, err := wv.Cut(data, limit); err == nil {
			if string(head)+string(rest) != string(data) {
				t.Fatalf("Cut(%x, %d) = %x + %x", data, limit, head, rest)
			}
			if len(rest) > 0 && (len(head) == 0 || !bounds[len(head)]) {
				t.Fatalf("Cut(%x, %d) head %x is not whole elements", data, limit, head)
			}
		}
	})
}
