package wire

import (
	"strings"
	"testing"
)

// TestCut: Cut keeps whole elements within the limit, at least one, and
// hands back the rest.
func TestCut(t *testing.T) {
	wv, err := NewWV(&Coder{URN: URNWindowedValue, Components: []*Coder{{URN: URNBytes}, {URN: URNGlobalWindow}}})
	if err != nil {
		t.Fatal(err)
	}
	elem := func(n int) []byte { // a windowed value of n bytes in all
		v := []byte(strings.Repeat("x", n-14))
		return AppendWindowedValue(nil, 0, [][]byte{GlobalWindow()}, PaneNoFiring, append([]byte{byte(len(v))}, v...))
	}
	if got := len(elem(20)); got != 20 {
		t.Fatalf("test element is %d bytes, want 20", got)
	}
	cat := func(sizes ...int) []byte {
		var b []byte
		for _, n := range sizes {
			b = append(b, elem(n)...)
		}
		return b
	}
	tests := []struct {
		name       string
		in         []byte
		limit      int
		head, rest int // bytes
	}{
		{"fits whole", cat(20, 20), 40, 40, 0},
		{"cut after the elements that fit", cat(20, 20, 20), 45, 40, 20},
		{"exactly at the limit", cat(20, 30, 20), 50, 50, 20},
		{"first element bigger than the limit", cat(60, 20), 50, 60, 20},
		{"empty", nil, 10, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			head, rest, err := wv.Cut(tc.in, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(head) != tc.head || len(rest) != tc.rest {
				t.Errorf("Cut = %d + %d bytes, want %d + %d", len(head), len(rest), tc.head, tc.rest)
			}
			if string(head)+string(rest) != string(tc.in) {
				t.Error("head and rest are not the input")
			}
		})
	}
	if _, _, err := wv.Cut([]byte{1, 2, 3}, 1); err == nil {
		t.Error("Cut of garbage: no error")
	}
}
