package state

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// entry is one ordered list entry; its value is encoded as a length-prefixed
// string so tests can split what ReadOrdered returns.
type entry struct {
	sk  int64
	val string
}

func (e entry) String() string { return fmt.Sprintf("%d:%s", e.sk, e.val) }

// encodeEntry encodes e as the Go SDK does (encodeOrderedListEntry):
// protowire varint of the sort key's bits, then the value.
func encodeEntry(dst []byte, e entry) []byte {
	dst = protowire.AppendVarint(dst, uint64(e.sk))
	dst = protowire.AppendVarint(dst, uint64(len(e.val)))
	return append(dst, e.val...)
}

// lpLen is the valueLen of the tests' length-prefixed values.
func lpLen(b []byte) (int, error) {
	l, n := protowire.ConsumeVarint(b)
	if n < 0 || uint64(len(b)-n) < l {
		return 0, errors.New("bad length prefix")
	}
	return n + int(l), nil
}

// decodeEntries splits ReadOrdered's output as the Go SDK does
// (decodeOrderedListEntry).
func decodeEntries(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	for len(b) > 0 {
		sk, n := protowire.ConsumeVarint(b)
		if n < 0 {
			t.Fatalf("bad sort key varint in %x", b)
		}
		b = b[n:]
		l, n := protowire.ConsumeVarint(b)
		if n < 0 || uint64(len(b)-n) < l {
			t.Fatalf("bad value length prefix in %x", b)
		}
		out = append(out, entry{int64(sk), string(b[n : n+int(l)])})
		b = b[n+int(l):]
	}
	return out
}

// op is one step of a scenario: append entries (one Append request each),
// or clear a range.
type op struct {
	add   []entry
	clear *[2]int64
}

func adds(es ...entry) op     { return op{add: es} }
func clr(start, end int64) op { return op{clear: &[2]int64{start, end}} }

type readCase struct {
	start, end int64
	want       []entry
}

func full(want ...entry) readCase { return readCase{math.MinInt64, math.MaxInt64, want} }

func TestOrderedList(t *testing.T) {
	const lo, hi = math.MinInt64, math.MaxInt64
	tests := []struct {
		name  string
		ops   []op
		reads []readCase
	}{
		{"empty", nil, []readCase{full(), {0, 100, nil}}},
		{
			"sort key order",
			[]op{adds(entry{300, "c"}, entry{100, "a"}, entry{200, "b"})},
			[]readCase{full(entry{100, "a"}, entry{200, "b"}, entry{300, "c"})},
		},
		{
			"ties keep append order",
			[]op{adds(entry{100, "x"}, entry{100, "y"}, entry{50, "z"}, entry{100, "w"})},
			[]readCase{full(entry{50, "z"}, entry{100, "x"}, entry{100, "y"}, entry{100, "w"})},
		},
		{
			"negative and extreme sort keys",
			[]op{adds(entry{hi, "max"}, entry{0, "zero"}, entry{-1, "neg"}, entry{lo, "min"}, entry{1, "one"})},
			[]readCase{
				full(entry{lo, "min"}, entry{-1, "neg"}, entry{0, "zero"}, entry{1, "one"}, entry{hi, "max"}),
				{lo, 0, []entry{{lo, "min"}, {-1, "neg"}}},
				{-1, 1, []entry{{-1, "neg"}, {0, "zero"}}},
				{hi, hi, []entry{{hi, "max"}}}, // end MaxInt64 has no upper bound
				{hi - 1, hi, []entry{{hi, "max"}}},
			},
		},
		{
			"sub-ranges are half open",
			[]op{adds(entry{100, "a"}, entry{200, "b"}, entry{200, "b2"}, entry{300, "c"})},
			[]readCase{
				{100, 200, []entry{{100, "a"}}},
				{101, 300, []entry{{200, "b"}, {200, "b2"}}},
				{200, 201, []entry{{200, "b"}, {200, "b2"}}},
				{300, 1000, []entry{{300, "c"}}},
				{301, 1000, nil},
				{200, 200, nil},
				{300, 100, nil},
			},
		},
		{
			"clear a range",
			[]op{adds(entry{100, "a"}, entry{200, "b"}, entry{300, "c"}, entry{400, "d"}), clr(200, 400)},
			[]readCase{full(entry{100, "a"}, entry{400, "d"})},
		},
		{
			"clear an empty or inverted range",
			[]op{adds(entry{100, "a"}, entry{200, "b"}), clr(200, 200), clr(300, 100)},
			[]readCase{full(entry{100, "a"}, entry{200, "b"})},
		},
		{
			"clear everything, including MaxInt64",
			[]op{adds(entry{lo, "min"}, entry{0, "a"}, entry{hi, "max"}), clr(lo, hi)},
			[]readCase{full(), {hi, hi, nil}},
		},
		{
			"append after clear",
			[]op{adds(entry{100, "a"}, entry{200, "b"}), clr(lo, 150), adds(entry{100, "a2"}, entry{200, "b2"})},
			[]readCase{full(entry{100, "a2"}, entry{200, "b"}, entry{200, "b2"})},
		},
		{
			"empty values",
			[]op{adds(entry{2, ""}, entry{1, ""})},
			[]readCase{full(entry{1, ""}, entry{2, ""})},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := openTest(t, Options{}).NewBundle()
			defer b.Discard()
			c := Cell{KeyGroup: 7, Transform: "e3", StateID: "list", Window: []byte{0, 1}, Key: []byte("k\x00")}
			for _, o := range tt.ops {
				for _, e := range o.add {
					if err := b.AppendOrdered(c, encodeEntry(nil, e)); err != nil {
						t.Fatalf("AppendOrdered(%v): %v", e, err)
					}
				}
				if o.clear != nil {
					if err := b.ClearOrdered(c, o.clear[0], o.clear[1]); err != nil {
						t.Fatalf("ClearOrdered(%v): %v", *o.clear, err)
					}
				}
			}
			for _, r := range tt.reads {
				data, err := b.ReadOrdered(c, r.start, r.end)
				if err != nil {
					t.Fatalf("ReadOrdered(%d, %d): %v", r.start, r.end, err)
				}
				if got := decodeEntries(t, data); !reflect.DeepEqual(got, r.want) {
					t.Errorf("ReadOrdered(%d, %d) = %v, want %v", r.start, r.end, got, r.want)
				}
			}
		})
	}
}

func TestOrderedListBundles(t *testing.T) {
	d := openTest(t, Options{})
	c := Cell{KeyGroup: 1, Transform: "e1", StateID: "s", Window: []byte("w"), Key: []byte("k")}
	read := func(b *Bundle) []entry {
		t.Helper()
		data, err := b.ReadOrdered(c, math.MinInt64, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		return decodeEntries(t, data)
	}
	add := func(b *Bundle, e entry) {
		t.Helper()
		if err := b.AppendOrdered(c, encodeEntry(nil, e)); err != nil {
			t.Fatal(err)
		}
	}

	b1 := d.NewBundle()
	add(b1, entry{10, "a"})
	if got := read(b1); !reflect.DeepEqual(got, []entry{{10, "a"}}) {
		t.Errorf("bundle does not see its own write: %v", got)
	}
	if err := b1.Commit(); err != nil {
		t.Fatal(err)
	}

	b2 := d.NewBundle()
	add(b2, entry{5, "discarded"})
	if err := b2.ClearOrdered(c, math.MinInt64, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if got := read(b2); got != nil {
		t.Errorf("after clear in bundle: %v", got)
	}
	b2.Discard()

	b3 := d.NewBundle()
	defer b3.Discard()
	if got := read(b3); !reflect.DeepEqual(got, []entry{{10, "a"}}) {
		t.Errorf("discarded bundle leaked or committed write lost: %v", got)
	}

	// A restored process restarts appendSeq: a tie appended now still
	// sorts after, and does not overwrite, the committed entry.
	saved := appendSeq.Load()
	appendSeq.Store(0)
	defer appendSeq.Store(max(saved, appendSeq.Load()))
	add(b3, entry{10, "b"})
	add(b3, entry{10, "c"})
	if got, want := read(b3), []entry{{10, "a"}, {10, "b"}, {10, "c"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("ties after seq restart = %v, want %v", got, want)
	}
}

func TestOrderedListCellsAreSeparate(t *testing.T) {
	b := openTest(t, Options{}).NewBundle()
	defer b.Discard()
	base := Cell{KeyGroup: 1, Transform: "e1", StateID: "s", Window: []byte("w"), Key: []byte("k")}
	others := []Cell{base, base, base, base, base}
	others[0].KeyGroup = 2
	others[1].Transform = "e2"
	others[2].StateID = "t"
	others[3].Window = []byte("w2")
	others[4].Key = []byte("k2")
	for i, c := range others {
		if err := b.AppendOrdered(c, encodeEntry(nil, entry{int64(i), "other"})); err != nil {
			t.Fatal(err)
		}
	}
	// Bag and multimap state of the same cell live in other key spaces.
	if err := b.AppendBag(base, []byte("bag")); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendMap(base, []byte("mk"), []byte("map")); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendOrdered(base, encodeEntry(nil, entry{1, "mine"})); err != nil {
		t.Fatal(err)
	}
	data, err := b.ReadOrdered(base, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := decodeEntries(t, data), []entry{{1, "mine"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("read %v, want %v", got, want)
	}
	if err := b.ClearOrdered(base, math.MinInt64, math.MaxInt64); err != nil {
		t.Fatal(err)
	}
	if bag, err := b.ReadBag(base); err != nil || string(bag) != "bag" {
		t.Errorf("bag after ordered clear = %q, %v", bag, err)
	}
	for _, c := range others {
		data, err := b.ReadOrdered(c, math.MinInt64, math.MaxInt64)
		if err != nil || len(decodeEntries(t, data)) != 1 {
			t.Errorf("cell %+v after clearing another: %x, %v", c, data, err)
		}
	}
}

func TestAppendOrderedFuncSplitsEntries(t *testing.T) {
	b := openTest(t, Options{}).NewBundle()
	defer b.Discard()
	c := Cell{Transform: "e1", StateID: "s"}
	in := []entry{{3, "c"}, {-7, "neg"}, {3, "c2"}, {1, ""}}
	var data []byte
	for _, e := range in {
		data = encodeEntry(data, e)
	}
	if err := b.AppendOrderedFunc(c, data, lpLen); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadOrdered(c, math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	if want := []entry{{-7, "neg"}, {1, ""}, {3, "c"}, {3, "c2"}}; !reflect.DeepEqual(decodeEntries(t, got), want) {
		t.Errorf("read %v, want %v", decodeEntries(t, got), want)
	}
	// Read returns entries exactly as the SDK sent them.
	if want := encodeEntry(encodeEntry(encodeEntry(encodeEntry(nil, in[1]), in[3]), in[0]), in[2]); string(got) != string(want) {
		t.Errorf("read bytes %x, want %x", got, want)
	}
}

func TestAppendOrderedErrors(t *testing.T) {
	b := openTest(t, Options{}).NewBundle()
	defer b.Discard()
	c := Cell{Transform: "e1", StateID: "s"}
	bad := func([]byte) (int, error) { return 0, errors.New("boom") }
	long := func(b []byte) (int, error) { return len(b) + 1, nil }
	for _, tt := range []struct {
		name     string
		data     []byte
		valueLen func([]byte) (int, error)
		want     string
	}{
		{"truncated varint", []byte{0x80}, nil, "malformed sort key"},
		{"overlong varint", []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, nil, "malformed sort key"},
		{"value error", encodeEntry(nil, entry{1, "a"}), bad, "boom"},
		{"value too long", encodeEntry(nil, entry{1, "a"}), long, "value length"},
	} {
		err := b.AppendOrderedFunc(c, tt.data, tt.valueLen)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "state s") {
			t.Errorf("%s: err = %v, want one naming state s and containing %q", tt.name, err, tt.want)
		}
	}
	if data, err := b.ReadOrdered(c, math.MinInt64, math.MaxInt64); err != nil || len(data) != 0 {
		t.Errorf("after failed appends: %x, %v", data, err)
	}
	if err := b.AppendOrdered(c, nil); err != nil {
		t.Errorf("empty append: %v", err)
	}
}
