package state

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadOp is one write of a random workload, applied through a Bundle.
type loadOp struct {
	kg    int
	apply func(b *Bundle) error
}

// loadWorkload draws writes to key groups [0, kgs): bag, multimap and
// ordered-list appends, timers set once each (some holding, some not) and
// fixed timers, each cell's writes in order, the whole in key-group order.
func loadWorkload(r *rand.Rand, kgs, n int) []loadOp {
	var ops []loadOp
	timer := 0
	for kg := 0; kg < kgs; kg++ {
		for range r.IntN(n + 1) {
			c := Cell{KeyGroup: kg, Transform: fmt.Sprintf("t%d", r.IntN(2)), StateID: []string{"s", "o", "m"}[r.IntN(3)],
				Window: []byte{byte(r.IntN(3))}, Key: []byte(fmt.Sprintf("k%d", r.IntN(5)))}
			v := []byte(fmt.Sprintf("v%d", r.IntN(1000)))
			switch x := r.IntN(5); {
			case x == 0:
				ops = append(ops, loadOp{kg, func(b *Bundle) error { return b.AppendBag(c, v) }})
			case x == 1:
				mk := []byte{byte('a' + r.IntN(3))}
				ops = append(ops, loadOp{kg, func(b *Bundle) error { return b.AppendMap(c, mk, v) }})
			case x == 2:
				sk := uint64(r.IntN(4))
				ops = append(ops, loadOp{kg, func(b *Bundle) error { return b.AppendOrdered(c, append(appendUvarint(sk), v...)) }})
			case x == 3:
				timer++
				hold := NoHold
				if r.IntN(2) == 0 {
					hold = int64(r.IntN(100))
				}
				tm := Timer{TimerID: TimerID{KeyGroup: kg, Domain: 1 + r.IntN(2), Transform: c.Transform, Family: "f", Key: []byte(fmt.Sprintf("timer%d", timer))},
					Fire: int64(r.IntN(100)), Hold: hold, Encoded: v}
				ops = append(ops, loadOp{kg, func(b *Bundle) error { return b.SetTimer(tm) }})
			default:
				tm := Timer{TimerID: TimerID{KeyGroup: kg, Domain: 4, Transform: "gc", Key: c.Key, Window: c.Window}, Fire: 100 + int64(c.Window[0]), Hold: NoHold}
				ops = append(ops, loadOp{kg, func(b *Bundle) error { return b.PutFixedTimer(tm) }})
			}
		}
	}
	return ops
}

func appendUvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// dumpState renders everything a reader of d sees in key groups [0, kgs):
// user state entries in order, every timer due by the end of time, and
// the minimum hold.
func dumpState(t *testing.T, d *DB, kgs int) string {
	t.Helper()
	var sb strings.Builder
	for kg := 0; kg < kgs; kg++ {
		err := d.ScanUserState(kg, func(e UserStateEntry) error {
			fmt.Fprintf(&sb, "state %s %d/%s/%s/%x/%s map=%s sort=%d %s\n", e.Kind, e.Cell.KeyGroup, e.Cell.Transform, e.Cell.StateID, e.Cell.Window, e.Cell.Key, e.MapKey, e.SortKey, e.Value)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	b := d.NewBundle()
	defer b.Discard()
	for domain := 1; domain <= 4; domain++ {
		due, err := b.DueTimersIn(domain, 0, kgs, NoHold, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for _, tm := range due {
			fmt.Fprintf(&sb, "timer %d %d %s %s %x fire=%d %s\n", tm.KeyGroup, tm.Domain, tm.Transform, tm.Key, tm.Window, tm.Fire, tm.Encoded)
		}
	}
	hold, ok, err := b.MinHold(0, kgs)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&sb, "min hold %d %v\n", hold, ok)
	return sb.String()
}

// TestLoadMatchesBundles: a random workload loaded through a Load, with
// small runs, reads back exactly as the same writes committed through
// bundles; in key-group order and shuffled (runs that overlap).
func TestLoadMatchesBundles(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	const kgs = 8
	defer func(n int) { loadBlockEnts = n }(loadBlockEnts)
	for round := range 12 {
		loadBlockEnts = 1 + r.IntN(6)
		ops := loadWorkload(r, kgs, 40)
		shuffled := round%3 == 2
		if shuffled {
			// Cells keep their writes' order; key groups are visited at random.
			byKG := map[int][]loadOp{}
			for _, op := range ops {
				byKG[op.kg] = append(byKG[op.kg], op)
			}
			ops = ops[:0]
			for _, kg := range r.Perm(kgs) {
				ops = append(ops, byKG[kg]...)
			}
		}
		perBundle := 1 + r.IntN(20)
		runBytes := 16 + r.IntN(2000)
		name := fmt.Sprintf("round %d (%d writes, %d a bundle, runs of %d bytes, blocks of %d, shuffled %v)", round, len(ops), perBundle, runBytes, loadBlockEnts, shuffled)

		want := openTest(t, Options{Cells: round%2 == 0})
		apply(t, name, ops, perBundle, want.NewBundle)
		got := openTest(t, Options{Cells: round%2 == 0})
		ld, err := got.NewLoad(runBytes)
		if err != nil {
			t.Fatal(err)
		}
		apply(t, name, ops, perBundle, ld.NewBundle)
		if err := ld.Finish(); err != nil {
			t.Fatalf("%s: Finish: %v", name, err)
		}
		if g, w := dumpState(t, got, kgs), dumpState(t, want, kgs); g != w {
			t.Fatalf("%s: loaded state differs\ngot:\n%s\nwant:\n%s", name, g, w)
		}
		if entries, _ := os.ReadDir(filepath.Dir(got.Dir())); len(entries) != 1 {
			t.Errorf("%s: %d entries beside the DB after Finish, want none", name, len(entries)-1)
		}
	}
}

func apply(t *testing.T, name string, ops []loadOp, perBundle int, newBundle func() *Bundle) {
	t.Helper()
	b := newBundle()
	for i, op := range ops {
		if err := op.apply(b); err != nil {
			t.Fatalf("%s: write %d: %v", name, i, err)
		}
		if (i+1)%perBundle == 0 {
			if err := b.Commit(); err != nil {
				t.Fatalf("%s: commit: %v", name, err)
			}
			b = newBundle()
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatalf("%s: commit: %v", name, err)
	}
}

// TestLoadRefuses: a load fails on a timer set twice at two times, on a
// write that is not a set, and on a DB that was not created empty; an
// aborted load leaves the DB empty.
func TestLoadRefuses(t *testing.T) {
	id := TimerID{KeyGroup: 1, Domain: 1, Transform: "t", Family: "f", Key: []byte("k")}
	c := Cell{KeyGroup: 1, Transform: "t", StateID: "s", Key: []byte("k")}
	tests := []struct {
		name  string
		write func(b *Bundle) error
		want  string
	}{
		{"timer set twice", func(b *Bundle) error {
			if err := b.SetTimer(Timer{TimerID: id, Fire: 5, Hold: NoHold}); err != nil {
				return err
			}
			return b.SetTimer(Timer{TimerID: id, Fire: 6, Hold: NoHold})
		}, "written twice with two values"},
		{"a delete", func(b *Bundle) error { return b.ClearDueTimer(Timer{TimerID: id, Fire: 5}) }, "a load only sets keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := openTest(t, Options{})
			ld, err := d.NewLoad(0)
			if err != nil {
				t.Fatal(err)
			}
			b := ld.NewBundle()
			err = tc.write(b)
			if err == nil {
				err = b.Commit()
			}
			if err == nil {
				err = ld.Finish()
			} else {
				ld.Abort()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load = %v, want an error with %q", err, tc.want)
			}
		})
	}

	t.Run("aborted", func(t *testing.T) {
		d := openTest(t, Options{})
		ld, err := d.NewLoad(16)
		if err != nil {
			t.Fatal(err)
		}
		b := ld.NewBundle()
		for kg := range 4 {
			c := c
			c.KeyGroup = kg
			if err := b.AppendBag(c, []byte("value")); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		ld.Abort()
		if s := dumpState(t, d, 4); s != "min hold 0 false\n" {
			t.Errorf("an aborted load left:\n%s", s)
		}
	})

	t.Run("not created empty", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		d := openTest(t, Options{Dir: dir})
		b := d.NewBundle()
		if err := b.AppendBag(c, []byte("v")); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := d.Checkpoint(filepath.Join(t.TempDir(), "chk")); err != nil {
			t.Fatal(err)
		}
		d.Close()
		d = openTest(t, Options{Dir: dir, MustExist: true})
		if _, err := d.NewLoad(0); err == nil || !strings.Contains(err.Error(), "not created empty") {
			t.Fatalf("NewLoad on a DB that held state = %v, want refused", err)
		}
	})
}
