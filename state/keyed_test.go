package state

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// TestClearAfterRead checks the clear that reuses the keys of the scan
// just before it: whatever was written between the two must go too.
func TestClearAfterRead(t *testing.T) {
	cell := func(k string) Cell { return Cell{KeyGroup: 3, Transform: "t", StateID: "s", Key: []byte(k)} }
	for _, tc := range []struct {
		name    string
		between func(b *Bundle) error // runs between the read and the clear of cell a
		wantA   string                // cell a after clear and a final append of "z"
		wantB   string
	}{
		{"nothing between", func(*Bundle) error { return nil }, "z", "b1"},
		{"append to the same cell", func(b *Bundle) error { return b.AppendBag(cell("a"), []byte("a3")) }, "z", "b1"},
		{"append to another cell", func(b *Bundle) error { return b.AppendBag(cell("b"), []byte("b2")) }, "z", "b1b2"},
		{"read of another cell", func(b *Bundle) error { _, err := b.ReadBag(cell("b")); return err }, "z", "b1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := openTest(t, Options{})
			b := d.NewBundle()
			for _, w := range []struct{ k, v string }{{"a", "a1"}, {"a", "a2"}, {"b", "b1"}} {
				if err := b.AppendBag(cell(w.k), []byte(w.v)); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			b = d.NewBundle()
			if got, err := b.ReadBag(cell("a")); err != nil || string(got) != "a1a2" {
				t.Fatalf("read a: %q, %v", got, err)
			}
			if err := tc.between(b); err != nil {
				t.Fatal(err)
			}
			if err := b.ClearBag(cell("a")); err != nil {
				t.Fatal(err)
			}
			if err := b.AppendBag(cell("a"), []byte("z")); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
			b = d.NewBundle()
			defer b.Discard()
			for k, want := range map[string]string{"a": tc.wantA, "b": tc.wantB} {
				if got, err := b.ReadBag(cell(k)); err != nil || string(got) != want {
					t.Errorf("cell %s: %q, %v; want %q", k, got, err, want)
				}
			}
		})
	}
}

// TestSizedBundles: bundles from NewBundleSized (whose batch starts at the
// size of the last one committed) read their own writes and commit them
// like any bundle, and a discarded one leaves nothing.
func TestSizedBundles(t *testing.T) {
	d := openTest(t, Options{})
	c := Cell{KeyGroup: 1, Transform: "t", StateID: "s", Window: []byte("w"), Key: []byte("k")}
	for i, v := range []string{"a", "bb", "ccc"} {
		b := d.NewBundleSized()
		if err := b.AppendBag(c, []byte(v)); err != nil {
			t.Fatal(err)
		}
		got, err := b.ReadBag(c)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a", "abb", "abbccc"}[i]; string(got) != want {
			t.Fatalf("bundle %d reads %q, want %q", i, got, want)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	b := d.NewBundleSized()
	if err := b.ClearBag(c); err != nil {
		t.Fatal(err)
	}
	b.Discard()
	r := d.NewBundle()
	defer r.Discard()
	if got, err := r.ReadBag(c); err != nil || string(got) != "abbccc" {
		t.Fatalf("after a discarded clear: %q, %v", got, err)
	}
}

// TestRewrittenValueReadsInFewSteps: a value state (a bag cleared and
// appended to) rewritten 5,000 times, in bundles and within one, reads in
// a few iterator steps, not one per old version; bags and map keys keep
// their order and contents across clears and appends.
func TestRewrittenValueReadsInFewSteps(t *testing.T) {
	for _, cells := range []bool{false, true} {
		t.Run(fmt.Sprintf("cells=%v", cells), func(t *testing.T) {
			d := openTest(t, Options{Cells: cells})
			cell := Cell{KeyGroup: 3, Transform: "t", StateID: "count", Key: []byte("hot")}
			write := func(b *Bundle, v string) {
				t.Helper()
				if err := b.ClearBag(cell); err != nil {
					t.Fatal(err)
				}
				if err := b.AppendBag(cell, []byte(v)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 2500 {
				b := d.NewBundle()
				write(b, fmt.Sprint(i))
				if err := b.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			b := d.NewBundle()
			defer b.Discard()
			for i := range 2500 {
				write(b, fmt.Sprint(2500+i)) // in the batch too
			}
			if err := b.AppendBag(cell, []byte("+next")); err != nil {
				t.Fatal(err)
			}
			before := b.it.Stats().ForwardStepCount[pebble.InternalIterCall]
			got, err := b.ReadBag(cell)
			if err != nil || string(got) != "4999+next" {
				t.Fatalf("read %q, %v; want 4999+next", got, err)
			}
			if steps := b.it.Stats().ForwardStepCount[pebble.InternalIterCall] - before; steps > 50 {
				t.Errorf("the read took %d internal steps: it walked the old versions", steps)
			}
			mk := []byte("mk")
			for _, v := range []string{"a", "b"} {
				if err := b.ClearMapKey(cell, mk); err != nil {
					t.Fatal(err)
				}
				if err := b.AppendMap(cell, mk, []byte(v)); err != nil {
					t.Fatal(err)
				}
				if err := b.AppendMap(cell, mk, []byte(v+"2")); err != nil {
					t.Fatal(err)
				}
			}
			if got, err := b.ReadMap(cell, mk); err != nil || string(got) != "bb2" {
				t.Errorf("map key: %q, %v; want bb2", got, err)
			}
		})
	}
}

// TestSequenceMarkOrdersAppendsAfterRestore: a process restored from a
// checkpoint appends after what the checkpoint holds even when its own
// sequence starts lower (another machine, a clock behind): the checkpoint
// records the sequence and opening it raises the process's. A checkpoint
// without the mark (taken before it existed, when sequences came from the
// wall clock) raises it to the clock.
func TestSequenceMarkOrdersAppendsAfterRestore(t *testing.T) {
	saved := appendSeq.Load()
	defer func() { appendSeq.Store(max(saved, appendSeq.Load())) }()
	cell := Cell{KeyGroup: 3, Transform: "t", StateID: "bag", Key: []byte("k")}
	appendTo := func(d *DB, v string) {
		t.Helper()
		b := d.NewBundle()
		if err := b.AppendBag(cell, []byte(v)); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	read := func(d *DB) string {
		t.Helper()
		b := d.NewBundle()
		defer b.Discard()
		got, err := b.ReadBag(cell)
		if err != nil {
			t.Fatal(err)
		}
		return string(got)
	}
	for _, tc := range []struct {
		name   string
		start  uint64 // the first process's sequence
		noMark bool
	}{
		{"restored where the sequence starts lower", 1 << 40, false},
		{"a checkpoint without the mark", uint64(time.Now().UnixNano()) - uint64(time.Hour), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appendSeq.Store(tc.start)
			d := openTest(t, Options{})
			appendTo(d, "a")
			appendTo(d, "b")
			chk := filepath.Join(t.TempDir(), "chk")
			if err := d.Checkpoint(chk); err != nil {
				t.Fatal(err)
			}
			if tc.noMark {
				old := openTest(t, Options{Dir: chk, MustExist: true})
				if err := old.Pebble().Delete(unkeyedPrefix(spaceSeqMark), pebble.NoSync); err != nil {
					t.Fatal(err)
				}
				if err := old.Pebble().Flush(); err != nil {
					t.Fatal(err)
				}
				old.Close()
			}
			appendSeq.Store(0) // the new process
			r := openTest(t, Options{Dir: chk, MustExist: true})
			appendTo(r, "c")
			if got := read(r); got != "abc" {
				t.Errorf("restored bag = %q, want abc", got)
			}
		})
	}
}
