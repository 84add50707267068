package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
)

func openSideDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// readAll follows continuation tokens with pieces of at most max bytes.
func readAll(t *testing.T, read func(token []byte) ([]byte, []byte, error), max int) ([]byte, int) {
	t.Helper()
	var out, token []byte
	for n := 1; ; n++ {
		data, next, err := read(token)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > max {
			t.Fatalf("piece of %d bytes, more than %d", len(data), max)
		}
		out = append(out, data...)
		if next == nil {
			return out, n
		}
		if n > 10000 {
			t.Fatal("continuation never ends")
		}
		token = next
	}
}

func TestSideValuesContinuation(t *testing.T) {
	db := openSideDB(t)
	w, other := []byte("w\x00"), []byte("w")
	var want []byte
	b := db.NewSideBatch()
	for i := range 50 {
		v := bytes.Repeat([]byte{byte('a' + i%26)}, i) // runs of 0 to 49 bytes
		want = append(want, v...)
		if err := b.AddValues(3, w, v); err != nil {
			t.Fatal(err)
		}
		// Neighbours: another window sharing a prefix, another side input.
		if err := b.AddValues(3, other, []byte("X")); err != nil {
			t.Fatal(err)
		}
		if err := b.AddValues(4, w, []byte("Y")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, max := range []int{1, 7, 49, 50, len(want) - 1, len(want), len(want) + 1, 1 << 20} {
		t.Run(fmt.Sprint("max ", max), func(t *testing.T) {
			got, n := readAll(t, func(tok []byte) ([]byte, []byte, error) { return db.ReadSideValues(3, w, tok, max) }, max)
			if !bytes.Equal(got, want) {
				t.Fatalf("read %q, want %q", got, want)
			}
			if wantN := max1((len(want) + max - 1) / max); n != wantN {
				t.Errorf("%d pieces, want %d", n, wantN)
			}
		})
	}
	if got, next, err := db.ReadSideValues(3, []byte("none"), nil, 10); err != nil || len(got) != 0 || next != nil {
		t.Errorf("absent window: %q, %x, %v", got, next, err)
	}
}

func max1(n int) int { return max(n, 1) }

func TestSideMultiAndKeys(t *testing.T) {
	db := openSideDB(t)
	w := []byte{1, 2}
	b := db.NewSideBatch()
	for _, kv := range [][2]string{{"b", "1"}, {"a", "2"}, {"b", "3"}, {"a\x00", "4"}, {"c", "5"}} {
		if err := b.AddMulti(0, w, []byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, want string }{{"a", "2"}, {"b", "13"}, {"a\x00", "4"}, {"c", "5"}, {"d", ""}} {
		got, _ := readAll(t, func(tok []byte) ([]byte, []byte, error) { return db.ReadSideMulti(0, w, []byte(tc.key), tok, 1) }, 1)
		if string(got) != tc.want {
			t.Errorf("key %q: %q, want %q", tc.key, got, tc.want)
		}
	}
	keys, _ := readAll(t, func(tok []byte) ([]byte, []byte, error) { return db.ReadSideKeys(0, w, tok, 2) }, 2)
	if want := "aa\x00bc"; string(keys) != want {
		t.Errorf("keys %q, want %q (distinct, in key order)", keys, want)
	}
}

func TestSideBadTokens(t *testing.T) {
	db := openSideDB(t)
	b := db.NewSideBatch()
	for _, w := range []string{"w1", "w2"} {
		if err := b.AddValues(0, []byte(w), []byte("0123456789")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	_, tok, err := db.ReadSideValues(0, []byte("w1"), nil, 4)
	if err != nil || tok == nil {
		t.Fatalf("first piece: token %x, %v", tok, err)
	}
	past := append(binary.BigEndian.AppendUint64(nil, 11), tok[8:]...)
	gone := append(bytes.Clone(tok[:8]), append(bytes.Clone(tok[8:len(tok)-1]), tok[len(tok)-1]+1)...)
	for name, tc := range map[string]struct {
		window string
		token  []byte
	}{
		"short":                 {"w1", []byte("abc")},
		"another window's":      {"w2", tok},
		"offset past value":     {"w1", past},
		"value no longer there": {"w1", gone},
	} {
		if _, _, err := db.ReadSideValues(0, []byte(tc.window), tc.token, 4); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s token: %v, want ErrBadToken", name, err)
		}
	}
	if _, _, err := db.ReadSideValues(0, []byte("w1"), nil, 0); err == nil {
		t.Error("read of 0 bytes: no error")
	}
}

func TestParkRelease(t *testing.T) {
	db := openSideDB(t)
	if _, _, ok, err := db.ParkedBounds(); ok || err != nil {
		t.Fatalf("empty DB has parked input: %v %v", ok, err)
	}
	park := func(need, minTs int64, s string) {
		t.Helper()
		if err := db.Park(need, minTs, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	park(30, 25, "c")
	park(10, 5, "a1")
	park(-5, 7, "n")
	park(10, 2, "a2")
	park(math.MaxInt64-1, 40, "end") // waits for the end
	need, minTs, ok, err := db.ParkedBounds()
	if !ok || err != nil || need != -5 || minTs != 2 {
		t.Fatalf("bounds %d %d %v %v, want -5 2", need, minTs, ok, err)
	}
	release := func(bound int64, budget int) (string, bool) {
		t.Helper()
		var got []string
		more, err := db.ReleaseParked(bound, budget, func(el []byte) error { got = append(got, string(el)); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(got), more
	}
	steps := []struct {
		bound        int64
		budget       int
		want         string
		more         bool
		need, minTs  int64
		nothingAfter bool
	}{
		{-5, 100, "[]", false, -5, 2, false},     // need -5 is not before -5
		{11, 1, "[n]", true, 10, 2, false},       // budget: one run, more ready
		{11, 3, "[a1 a2]", false, 30, 25, false}, // same need: arrival order
		{30, 100, "[]", false, 30, 25, false},
		{math.MaxInt64 - 1, 100, "[c]", false, math.MaxInt64 - 1, 40, false},
		{math.MaxInt64, 100, "[end]", false, 0, 0, true}, // the bound of ended side inputs: everything
	}
	for i, s := range steps {
		got, more := release(s.bound, s.budget)
		if got != s.want || more != s.more {
			t.Errorf("step %d: released %s (more %v), want %s (more %v)", i, got, more, s.want, s.more)
		}
		need, minTs, ok, err := db.ParkedBounds()
		if err != nil || ok == s.nothingAfter || (ok && (need != s.need || minTs != s.minTs)) {
			t.Errorf("step %d: bounds %d %d %v %v, want %d %d", i, need, minTs, ok, err, s.need, s.minTs)
		}
	}
}

func TestParkedSurvivesCheckpoint(t *testing.T) {
	db := openSideDB(t)
	if err := db.Park(100, 50, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := db.NewSideBatch()
	if err := b.AddValues(0, nil, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/chk"
	if err := db.Checkpoint(dir); err != nil {
		t.Fatal(err)
	}
	re, err := Open(Options{Dir: dir, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	if need, minTs, ok, err := re.ParkedBounds(); !ok || err != nil || need != 100 || minTs != 50 {
		t.Errorf("restored parked bounds %d %d %v %v", need, minTs, ok, err)
	}
	if v, _, err := re.ReadSideValues(0, nil, nil, 10); err != nil || string(v) != "v" {
		t.Errorf("restored side input %q %v", v, err)
	}
}
