package state

import (
	"fmt"
	"testing"
)

func TestMurmur3Vectors(t *testing.T) {
	tests := []struct {
		in   string
		seed uint32
		want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514e28b7},
		{"", 0xffffffff, 0x81f16f39},
		{"\xff\xff\xff\xff", 0, 0x76293b50},
		{"\x21\x43\x65\x87", 0, 0xf55b516b},
		{"\x21\x43\x65\x87", 0x5082edee, 0x2362f9de},
		{"\x21\x43\x65", 0, 0x7e4a8634},
		{"\x21\x43", 0, 0xa0f7b07a},
		{"\x21", 0, 0x72661cf4},
		{"\x00\x00\x00\x00", 0, 0x2362f9de},
		{"\x00\x00\x00", 0, 0x85f0b427},
		{"\x00\x00", 0, 0x30f4c306},
		{"\x00", 0, 0x514e28b7},
		{"hello", 0, 0x248bfa47},
		{"The quick brown fox jumps over the lazy dog", 0, 0x2e4ff723},
	}
	for _, tc := range tests {
		if got := murmur3([]byte(tc.in), tc.seed); got != tc.want {
			t.Errorf("murmur3(%q, %#x) = %#08x, want %#08x", tc.in, tc.seed, got, tc.want)
		}
	}
}

func TestKeyGroup(t *testing.T) {
	tests := []struct {
		key  string
		maxP int
		want int
	}{
		{"", 128, 0},
		{"hello", 128, 0x248bfa47 % 128},
		{"hello", 1, 0},
		{"hello", 7, 0x248bfa47 % 7},
		{"The quick brown fox jumps over the lazy dog", 128, 0x2e4ff723 % 128},
		{"The quick brown fox jumps over the lazy dog", MaxKeyGroups, 0x2e4ff723 % MaxKeyGroups},
	}
	for _, tc := range tests {
		if got := KeyGroup([]byte(tc.key), tc.maxP); got != tc.want {
			t.Errorf("KeyGroup(%q, %d) = %d, want %d", tc.key, tc.maxP, got, tc.want)
		}
	}
	// Spread: 64k keys over 128 groups should land within a loose band.
	counts := make([]int, DefaultMaxParallelism)
	for i := range 1 << 16 {
		counts[KeyGroup(fmt.Appendf(nil, "key-%d", i), DefaultMaxParallelism)]++
	}
	for kg, c := range counts {
		if c < 400 || c > 624 { // mean 512
			t.Errorf("key group %d got %d of 65536 keys", kg, c)
		}
	}
}

func TestKeyGroupPanicsOnZero(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("KeyGroup with maxParallelism 0 did not panic")
		}
	}()
	KeyGroup([]byte("x"), 0)
}

func TestKeyGroupRangeTable(t *testing.T) {
	tests := []struct {
		subtask, p, maxP int
		start, end       int
	}{
		{0, 1, 128, 0, 128},
		{0, 2, 128, 0, 64},
		{1, 2, 128, 64, 128},
		{0, 3, 128, 0, 43},
		{1, 3, 128, 43, 86},
		{2, 3, 128, 86, 128},
		{0, 128, 128, 0, 1},
		{127, 128, 128, 127, 128},
		{0, 4, 2, 0, 1}, // P > maxP: some subtasks own nothing
		{1, 4, 2, 1, 1},
		{2, 4, 2, 1, 2},
		{3, 4, 2, 2, 2},
	}
	for _, tc := range tests {
		s, e := KeyGroupRange(tc.subtask, tc.p, tc.maxP)
		if s != tc.start || e != tc.end {
			t.Errorf("KeyGroupRange(%d, %d, %d) = [%d,%d), want [%d,%d)", tc.subtask, tc.p, tc.maxP, s, e, tc.start, tc.end)
		}
	}
	if got := SubtaskForKeyGroup(42, 3, 128); got != 0 {
		t.Errorf("SubtaskForKeyGroup(42, 3, 128) = %d, want 0", got)
	}
	if got := SubtaskForKeyGroup(43, 3, 128); got != 1 {
		t.Errorf("SubtaskForKeyGroup(43, 3, 128) = %d, want 1", got)
	}
}

// TestKeyGroupRangeInverse checks, for many (P, maxP), that the ranges tile
// [0, maxP) in subtask order and that each key group's range is the one of
// SubtaskForKeyGroup.
func TestKeyGroupRangeInverse(t *testing.T) {
	maxPs := []int{1, 2, 3, 7, 10, 64, 127, 128, 129, 256, 1000, 4096, MaxKeyGroups}
	for _, maxP := range maxPs {
		for p := 1; p <= 300; p++ {
			next := 0
			for s := range p {
				start, end := KeyGroupRange(s, p, maxP)
				if start != next || end < start {
					t.Fatalf("P=%d maxP=%d: subtask %d range [%d,%d), want start %d", p, maxP, s, start, end, next)
				}
				if p <= maxP && end == start {
					t.Fatalf("P=%d <= maxP=%d: subtask %d owns no key group", p, maxP, s)
				}
				for kg := start; kg < end; kg++ {
					if got := SubtaskForKeyGroup(kg, p, maxP); got != s {
						t.Fatalf("P=%d maxP=%d: kg %d in range of subtask %d but SubtaskForKeyGroup = %d", p, maxP, kg, s, got)
					}
				}
				next = end
			}
			if next != maxP {
				t.Fatalf("P=%d maxP=%d: ranges end at %d", p, maxP, next)
			}
		}
	}
}
