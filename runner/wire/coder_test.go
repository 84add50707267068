package wire

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
)

// TestSkipMatchesBeam encodes values with Beam and checks that Skip finds the
// same boundary, with trailing bytes present, and rejects every truncation.
func TestSkipMatchesBeam(t *testing.T) {
	for _, tc := range coderCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, tc.c)
			enc := beamEncode(t, tc.c, tc.v)
			n, err := c.Skip(append(bytes.Clone(enc), 0xAB, 0xCD, 0xEF))
			if err != nil || n != len(enc) {
				t.Fatalf("%v.Skip = %d, %v; want %d (enc %x)", c, n, err, len(enc), enc)
			}
			for i := range enc {
				if n, err := c.Skip(enc[:i]); !errors.Is(err, ErrTruncated) {
					t.Fatalf("Skip(enc[:%d]) = %d, %v; want ErrTruncated", i, n, err)
				}
			}
		})
	}
}

func TestSplitKVMatchesBeam(t *testing.T) {
	for _, tc := range coderCases(t) {
		if tc.c.Kind != coder.KV {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, tc.c)
			enc := beamEncode(t, tc.c, tc.v)
			k, v, err := c.SplitKV(enc)
			if err != nil {
				t.Fatal(err)
			}
			wantK := beamEncode(t, tc.c.Components[0], fv(tc.v.Elm))
			var vfv *exec.FullValue
			if inner, ok := tc.v.Elm2.(*exec.FullValue); ok {
				vfv = inner
			} else {
				vfv = fv(tc.v.Elm2)
			}
			wantV := beamEncode(t, tc.c.Components[1], vfv)
			if !bytes.Equal(k, wantK) || !bytes.Equal(v, wantV) {
				t.Errorf("SplitKV = %x, %x; want %x, %x", k, v, wantK, wantV)
			}
			if _, _, err := c.SplitKV(append(bytes.Clone(enc), 0)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("SplitKV with a trailing byte: err = %v, want ErrCorrupt", err)
			}
			if _, _, err := c.SplitKV(enc[:len(enc)-1]); !errors.Is(err, ErrTruncated) {
				t.Errorf("SplitKV truncated: err = %v, want ErrTruncated", err)
			}
		})
	}
	if _, _, err := build(t, coder.NewString()).SplitKV([]byte{0}); err == nil {
		t.Error("SplitKV on a string coder succeeded")
	}
}

// TestIterableBlockForm checks the -1 (blocks) iterable form against Beam's
// decoder, and AppendIterable's output likewise.
func TestIterableBlockForm(t *testing.T) {
	bc := coder.NewI(coder.NewString())
	c := build(t, bc)
	str := func(s string) []byte { return beamEncode(t, coder.NewString(), fv(s)) }
	var blocks []byte
	blocks = append(blocks, 0xff, 0xff, 0xff, 0xff)
	blocks = AppendVarint(blocks, 2)
	blocks = append(append(blocks, str("a")...), str("bb")...)
	blocks = AppendVarint(blocks, 1)
	blocks = append(blocks, str("ccc")...)
	blocks = AppendVarint(blocks, 0)
	known := AppendIterable(nil, [][]byte{str("a"), str("bb"), str("ccc")})
	empty := []byte{0xff, 0xff, 0xff, 0xff, 0}

	for name, enc := range map[string][]byte{"blocks": blocks, "known": known, "empty-blocks": empty} {
		r := bytes.NewReader(append(bytes.Clone(enc), 0x77))
		got, err := exec.MakeElementDecoder(bc).Decode(r)
		if err != nil {
			t.Fatalf("%s: Beam decode: %v", name, err)
		}
		if r.Len() != 1 {
			t.Errorf("%s: Beam left %d bytes, want 1", name, r.Len())
		}
		want := []string{"a", "bb", "ccc"}
		if name == "empty-blocks" {
			want = []string{}
		}
		if gs := got.Elm.([]string); len(gs) != len(want) || (len(gs) > 0 && gs[2] != want[2]) {
			t.Errorf("%s: Beam decoded %q, want %q", name, gs, want)
		}
		if n, err := c.Skip(append(bytes.Clone(enc), 0x77)); err != nil || n != len(enc) {
			t.Errorf("%s: Skip = %d, %v; want %d", name, n, err, len(enc))
		}
		for i := range enc {
			if _, err := c.Skip(enc[:i]); !errors.Is(err, ErrTruncated) {
				t.Errorf("%s: Skip(enc[:%d]) err = %v, want ErrTruncated", name, i, err)
			}
		}
	}
	if _, err := c.Skip([]byte{0xff, 0xff, 0xff, 0xfe}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("count -2: err = %v, want ErrCorrupt", err)
	}
}

// TestSkipHuge checks that absurd counts fail fast instead of looping.
func TestSkipHuge(t *testing.T) {
	gw := &Coder{URN: URNIterable, Components: []*Coder{{URN: URNGlobalWindow}}}
	if n, err := gw.Skip([]byte{0x7f, 0xff, 0xff, 0xff}); err != nil || n != 4 {
		t.Errorf("iterable of 2^31-1 global windows: %d, %v", n, err)
	}
	dbl := &Coder{URN: URNIterable, Components: []*Coder{{URN: URNDouble}}}
	if _, err := dbl.Skip([]byte{0x7f, 0xff, 0xff, 0xff, 1, 2}); !errors.Is(err, ErrTruncated) {
		t.Errorf("iterable of 2^31-1 doubles: err = %v", err)
	}
	blocks := &Coder{URN: URNIterable, Components: []*Coder{{URN: URNBool}}}
	huge := append([]byte{0xff, 0xff, 0xff, 0xff}, AppendVarint(nil, 1<<63)...)
	if _, err := blocks.Skip(huge); !errors.Is(err, ErrCorrupt) {
		t.Errorf("block count 2^63: err = %v", err)
	}
}

// TestSkipMalformedCoders checks hand-built trees that lack components.
func TestSkipMalformedCoders(t *testing.T) {
	for _, c := range []*Coder{
		nil,
		{URN: URNKV},
		{URN: URNKV, Components: []*Coder{{URN: URNBool}, nil}},
		{URN: URNIterable},
		{URN: URNNullable},
		{URN: URNWindowedValue},
		{URN: URNTimer},
		{URN: URNRow},
		{URN: "beam:coder:made_up:v1"},
	} {
		if _, err := c.Skip(bytes.Repeat([]byte{1}, 64)); err == nil {
			t.Errorf("%v.Skip succeeded", c)
		}
	}
	if _, err := (&Coder{URN: URNRow}).Skip(nil); !errors.Is(err, ErrNotWalkable) {
		t.Errorf("row Skip err = %v, want ErrNotWalkable", err)
	}
	nullable := &Coder{URN: URNNullable, Components: []*Coder{{URN: URNBool}}}
	if _, err := nullable.Skip([]byte{2}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("nullable flag 2: err = %v, want ErrCorrupt", err)
	}
}

func TestCoderString(t *testing.T) {
	c := build(t, kvC(coder.NewString(), customCoder(t)))
	if got, want := c.String(), "kv(string_utf8, length_prefix(custom))"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestBuildCoGBK(t *testing.T) {
	c := coder.NewCoGBK([]*coder.Coder{coder.NewString(), coder.NewVarInt(), coder.NewBytes()})
	got := build(t, c)
	if got.URN != URNKV || got.Components[1].URN != URNIterable ||
		got.Components[1].Components[0].URN != URNLengthPrefix {
		t.Errorf("CoGBK built as %v", got)
	}
}
