package trigger

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestStateEncoding(t *testing.T) {
	m, err := New(repeat(orFinally(anyOf(count(3), procTime(delay(1000))), endOfWindow(never(), always()))))
	if err != nil {
		t.Fatal(err)
	}
	var s State
	if got, want := s.Encode(), []byte{stateVersion, 0}; !bytes.Equal(got, want) {
		t.Fatalf("zero State encodes as %x, want %x", got, want)
	}
	m.OnEvent(&s, Input{Elements: 2, ProcessingTime: 1_700_000_000_000, WindowEnd: 9999})
	b := s.Encode()
	if len(b) > 24 { // 8 cells, one holding an epoch-millisecond time
		t.Errorf("state of %s after two elements takes %d bytes (%x); want a handful", m, len(b), b)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Check(got); err != nil {
		t.Fatal(err)
	}
	// The decoded state carries on exactly like the original.
	in := Input{Elements: 1, ProcessingTime: 1_700_000_000_500, WindowEnd: 9999}
	f1, d1, w1 := m.OnEvent(&s, in)
	f2, d2, w2 := m.OnEvent(got, in)
	if f1 != f2 || d1 != d2 || w1 != w2 || !bytes.Equal(s.Encode(), got.Encode()) {
		t.Fatalf("decoded state diverged: %v %v %v / %v %v %v", f1, d1, w1, f2, d2, w2)
	}
	if !f1 {
		t.Fatalf("third element should fire ElementCount(3)")
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want string
	}{
		{nil, "empty"},
		{[]byte{2, 0}, "unknown version 2"},
		{[]byte{1}, "bad cell count"},
		{[]byte{1, 0x80, 0x00}, "bad cell count"}, // overlong varint
		{[]byte{1, 3, 0, 0}, "3 cells in 2 bytes"},
		{[]byte{1, 0xff, 0xff, 0x03}, "cells in 0 bytes"},
		{[]byte{1, 1, 0x10}, "unknown flags 0x10"},
		{[]byte{1, 1, 0x80}, "bad number"},
		{[]byte{1, 1, 0x80, 0x00}, "non-canonical number"},
		{[]byte{1, 1, 0x80, 0x82, 0x00}, "non-canonical number"},
		{[]byte{1, 2, 0x80, 0x02}, "truncated at cell 1"},
		{[]byte{1, 1, 0, 0}, "1 trailing bytes"},
	} {
		s, err := Decode(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Decode(%x) = %v, %v; want an error containing %q", tc.b, s, err, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	m, err := New(all(count(2), procTime(delay(5))))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *State
		want string
	}{
		{nil, ""},
		{&State{}, ""},
		{&State{cells: []cell{{}, {v: 1}, {flags: fTimeSet, v: 7}}}, ""},
		{&State{cells: []cell{{}, {}}}, "2 cells for 3 trigger parts"},
		{&State{cells: []cell{{}, {flags: fTimeSet}, {}}}, "cell 1 holds a processing time for ElementCount"},
		{&State{cells: []cell{{flags: fLate}, {}, {}}}, "cell 0 holds a late phase for AfterAll"},
		{&State{cells: []cell{{}, {}, {v: 3}}}, "cell 2 holds a stray time"},
		{&State{cells: []cell{{}, {v: -1}, {}}}, "cell 1 holds a negative count"},
		{&State{cells: []cell{{v: 1}, {}, {}}}, "cell 0 holds a number for AfterAll"},
		{&State{cells: []cell{{flags: fFinished | fOpen}, {}, {}}}, ""},
		{&State{cells: []cell{{flags: fOpen}, {}, {}}}, "cell 0 holds an open window on an unfinished or inner part"},
		{&State{cells: []cell{{flags: fFinished}, {flags: fFinished | fOpen}, {}}}, "cell 1 holds an open window"},
	} {
		err := m.Check(tc.s)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Check(%v) = %v", tc.s, err)
		case tc.want != "" && (err == nil || !errors.Is(err, ErrStateMismatch) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Check(%v) = %v, want ErrStateMismatch containing %q", tc.s, err, tc.want)
		}
	}
}

func TestOnEventPanicsOnForeignState(t *testing.T) {
	m, err := New(count(2))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "ElementCount(2)") {
			t.Fatalf("recover() = %v, want a panic naming the trigger", r)
		}
	}()
	m.OnEvent(&State{cells: make([]cell, 3)}, Input{Elements: 1})
}

// FuzzDecode feeds Decode arbitrary bytes: it must never panic, whatever it
// accepts must re-encode to the same bytes, and a state that passes Check
// must be safe to run.
func FuzzDecode(f *testing.F) {
	m, err := New(repeat(orFinally(each(count(2), endOfWindow(procTime(delay(10)), always())), anyOf(never(), syncTime()))))
	if err != nil {
		f.Fatal(err)
	}
	var s State
	f.Add(s.Encode())
	for i := range 6 {
		m.OnEvent(&s, Input{Elements: 1, ProcessingTime: int64(i) * 7, Watermark: int64(i) * 3000, WindowEnd: 9999})
		f.Add(s.Encode())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0x80, 0x00})
	f.Add([]byte{1, 1, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			if s != nil {
				t.Fatalf("Decode(%x) returned both %v and %v", b, s, err)
			}
			return
		}
		if got := s.Encode(); !bytes.Equal(got, b) {
			t.Fatalf("Decode(%x).Encode() = %x", b, got)
		}
		if m.Check(s) != nil {
			return
		}
		_ = s.Finished()
		for _, in := range []Input{
			{Elements: 1, ProcessingTime: 5, WindowEnd: 9999},
			{Watermark: 10_000, ProcessingTime: 1 << 62, WindowEnd: 9999},
			{Elements: 3, Watermark: 20_000, ProcessingTime: -1, WindowEnd: 9999},
		} {
			m.OnEvent(s, in)
			if err := m.Check(s); err != nil {
				t.Fatalf("OnEvent turned a checked state into one that fails Check: %v", err)
			}
		}
	})
}
