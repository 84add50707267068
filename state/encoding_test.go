package state

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

func TestAppendComponent(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "\x00\x01"},
		{"a", "a\x00\x01"},
		{"\x00", "\x00\xff\x00\x01"},
		{"a\x00b", "a\x00\xffb\x00\x01"},
		{"\x00\x00", "\x00\xff\x00\xff\x00\x01"},
		{"\xff\x01", "\xff\x01\x00\x01"},
	}
	for _, tc := range tests {
		got := AppendComponent([]byte("pre"), []byte(tc.in))
		if string(got) != "pre"+tc.want {
			t.Errorf("AppendComponent(%q) = %q, want %q", tc.in, got[3:], tc.want)
		}
		comp, rest, err := ReadComponent(append(got[3:], "tail"...))
		if err != nil || string(comp) != tc.in || string(rest) != "tail" {
			t.Errorf("ReadComponent(enc(%q)) = %q, %q, %v", tc.in, comp, rest, err)
		}
	}
}

func TestReadComponentErrors(t *testing.T) {
	for _, in := range []string{"", "abc", "a\x00", "a\x00\x02", "\x00\x00\x01", "\x00\xff", "ab\x00\xffc"} {
		_, _, err := ReadComponent([]byte(in))
		if !errors.Is(err, ErrBadComponent) {
			t.Errorf("ReadComponent(%q) err = %v, want ErrBadComponent", in, err)
		}
	}
}

func TestReadComponentAliasIsCapLimited(t *testing.T) {
	src := AppendComponent(nil, []byte("abc"))
	src = append(src, "xyz"...)
	comp, _, err := ReadComponent(src)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(comp, '!')
	if string(src[3:]) != "\x00\x01xyz" {
		t.Fatalf("append to comp overwrote src: %q", src)
	}
}

func TestTupleOrder(t *testing.T) {
	// (a, b) tuples sort by a then b, even when a is a prefix of another a.
	tuples := [][2]string{{"a", "z"}, {"a\x00", "a"}, {"a\x00\x00", ""}, {"a\x01", ""}, {"ab", ""}, {"", "\xff"}}
	enc := func(tp [2]string) []byte {
		return AppendComponent(AppendComponent(nil, []byte(tp[0])), []byte(tp[1]))
	}
	for _, x := range tuples {
		for _, y := range tuples {
			want := bytes.Compare([]byte(x[0]), []byte(y[0]))
			if want == 0 {
				want = bytes.Compare([]byte(x[1]), []byte(y[1]))
			}
			if got := bytes.Compare(enc(x), enc(y)); got != want {
				t.Errorf("compare(enc%q, enc%q) = %d, want %d", x, y, got, want)
			}
		}
	}
}

func TestTimestampOrder(t *testing.T) {
	ts := []int64{math.MinInt64, -1 << 40, -1, 0, 1, 1 << 40, math.MaxInt64}
	for i, a := range ts {
		ea := appendTimestamp(nil, a)
		if got := readTimestamp(ea); got != a {
			t.Errorf("readTimestamp(appendTimestamp(%d)) = %d", a, got)
		}
		for j, b := range ts {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := bytes.Compare(ea, appendTimestamp(nil, b)); got != want {
				t.Errorf("compare(ts %d, ts %d) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func FuzzComponent(f *testing.F) {
	f.Add([]byte(""), []byte(""))
	f.Add([]byte("a"), []byte("a\x00"))
	f.Add([]byte("\x00"), []byte("\x00\x01"))
	f.Add([]byte("\x00\xff"), []byte("\x00"))
	f.Add([]byte("ab\x00\x01c"), []byte("ab"))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ea := AppendComponent(nil, a)
		eb := AppendComponent(nil, b)
		if got, want := bytes.Compare(ea, eb), bytes.Compare(a, b); got != want {
			t.Fatalf("compare(enc(%q), enc(%q)) = %d, want %d", a, b, got, want)
		}
		// Round trip, followed by arbitrary bytes.
		comp, rest, err := ReadComponent(append(ea, b...))
		if err != nil || !bytes.Equal(comp, a) || !bytes.Equal(rest, b) {
			t.Fatalf("ReadComponent(enc(%q)+%q) = %q, %q, %v", a, b, comp, rest, err)
		}
		// Garbage must give an error or a valid decode, never a panic, and a
		// successful decode must re-encode to exactly the bytes consumed.
		for _, g := range [][]byte{a, b, append(bytes.Clone(a), b...)} {
			comp, rest, err := ReadComponent(g)
			if err != nil {
				if !errors.Is(err, ErrBadComponent) {
					t.Fatalf("ReadComponent(%q) error %v does not wrap ErrBadComponent", g, err)
				}
				continue
			}
			consumed := g[:len(g)-len(rest)]
			if re := AppendComponent(nil, comp); !bytes.Equal(re, consumed) {
				t.Fatalf("ReadComponent(%q) = %q consuming %q, which re-encodes as %q", g, comp, consumed, re)
			}
		}
	})
}
