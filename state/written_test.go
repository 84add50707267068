package state

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestWrittenNoFalseAbsence: every key added is reported as possibly
// written; at this load almost every other key is reported as never.
func TestWrittenNoFalseAbsence(t *testing.T) {
	w := newWritten()
	const n = 200_000
	for i := range n {
		w.add(fmt.Appendf(nil, "cell-%d", i))
	}
	for i := range n {
		if w.never(fmt.Appendf(nil, "cell-%d", i)) {
			t.Fatalf("cell-%d was added but is reported as never written", i)
		}
	}
	fp := 0
	for i := range n {
		if !w.never(fmt.Appendf(nil, "other-%d", i)) {
			fp++
		}
	}
	if fp > n/100 {
		t.Errorf("%d of %d keys never added pass the filter", fp, n)
	}
	var nilW *written
	nilW.add([]byte("x"))
	if nilW.never([]byte("x")) {
		t.Error("a nil filter claims to know a key was never written")
	}
}

// TestWrittenOnlyForNewDBs: a DB created empty keeps the filter and
// answers reads and timer clears of never-written cells without Pebble;
// a DB opened on data it did not write (a reopened directory, a restore)
// has no filter and still finds that data.
func TestWrittenOnlyForNewDBs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	c := Cell{KeyGroup: 2, Transform: "t", StateID: "s", Window: []byte("w"), Key: []byte("k")}
	tm := Timer{TimerID: TimerID{KeyGroup: 2, Domain: 1, Transform: "t", Family: "f", Key: []byte("k"), Window: []byte("w")}, Fire: 10, Hold: 10}

	d, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if d.written == nil {
		t.Fatal("a DB created empty has no filter")
	}
	b := d.NewBundle()
	other := c
	other.Key = []byte("never")
	if got, err := b.ReadBag(other); err != nil || got != nil {
		t.Fatalf("read of a never-written cell: %q, %v", got, err)
	}
	if err := b.ClearBag(other); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendBag(c, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.SetTimer(tm); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := d.pdb.Flush(); err != nil { // the WAL is off: keep the writes for the reopen
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	for _, mustExist := range []bool{false, true} {
		d, err := Open(Options{Dir: dir, Logger: quietLogger(), MustExist: mustExist})
		if err != nil {
			t.Fatal(err)
		}
		if d.written != nil {
			t.Errorf("MustExist=%v: a DB opened on existing data has a filter", mustExist)
		}
		b := d.NewBundle()
		if got, err := b.ReadBag(c); err != nil || string(got) != "v" {
			t.Errorf("MustExist=%v: reopened read %q, %v; want v", mustExist, got, err)
		}
		due, err := b.DueTimersIn(1, 0, 8, 100, 10)
		if err != nil || len(due) != 1 {
			t.Errorf("MustExist=%v: due timers %v, %v; want the one set", mustExist, due, err)
		}
		b.Discard()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
