package state

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
)

func TestCellSplit(t *testing.T) {
	cell := Cell{KeyGroup: 7, Transform: "e3", StateID: "count", Window: []byte{0, 1, 0xff}, Key: []byte("k\x00ey")}
	bag := cell.prefix(spaceBag)
	mapCell := cell.prefix(spaceMap)
	mapKey := AppendComponent(bytes.Clone(mapCell), []byte("m\x00k"))
	seq := []byte{0, 0, 0, 0, 0, 0, 0, 9}
	for _, tc := range []struct {
		name   string
		key    []byte
		prefix int
	}{
		{"bag value", append(bytes.Clone(bag), seq...), len(bag)},
		{"bag slot zero", append(bytes.Clone(bag), slotZero...), len(bag)},
		{"bag slot zero's successor", append(append(bytes.Clone(bag), slotZero...), 0), len(bag)},
		{"bag cell alone", bag, len(bag)},
		{"multimap value", append(bytes.Clone(mapKey), seq...), len(mapKey)},
		{"multimap cell without its map key", append(bytes.Clone(mapCell), seq...), len(mapCell) + len(seq)},
		{"timer", append(cell.prefix(spaceTimerRev), 1, 2), len(cell.prefix(spaceTimerRev)) + 2},
		{"ordered list", append(cell.prefix(spaceOrdered), seq...), len(cell.prefix(spaceOrdered)) + len(seq)},
		{"unkeyed", append(unkeyedPrefix(spaceBag), bag[3:]...), len(bag)},
		{"truncated component", bag[:len(bag)-1], len(bag) - 1},
		{"short", []byte{0, 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := cellSplit(tc.key); got != tc.prefix {
				t.Fatalf("cellSplit = %d, want %d", got, tc.prefix)
			}
		})
	}
}

// TestCellSplitOrder checks Pebble's rules for Split on random keys of
// every space: a key's prefix sorts no later than the key, and prefixes
// sort as their keys do.
func TestCellSplitOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	part := func() []byte {
		b := make([]byte, rng.IntN(4))
		for i := range b {
			b[i] = []byte{0, 1, 0xff, 'a'}[rng.IntN(4)]
		}
		return b
	}
	var keys [][]byte
	for range 3000 {
		c := Cell{KeyGroup: rng.IntN(3), Transform: string(part()), StateID: string(part()), Window: part(), Key: part()}
		space := []byte{spaceBag, spaceMap, spaceTimer, spaceOrdered}[rng.IntN(4)]
		k := c.prefix(space)
		if space == spaceMap {
			k = AppendComponent(k, part())
		}
		k = append(k, part()...)
		k = append(k, part()...)
		keys = append(keys, k)
	}
	slices.SortFunc(keys, bytes.Compare)
	for i, k := range keys {
		p := k[:cellSplit(k)]
		if bytes.Compare(p, k) > 0 {
			t.Fatalf("prefix %x sorts after its key %x", p, k)
		}
		if i > 0 {
			prev := keys[i-1][:cellSplit(keys[i-1])]
			if bytes.Compare(prev, p) > 0 {
				t.Fatalf("keys %x < %x but prefixes %x > %x", keys[i-1], k, prev, p)
			}
		}
	}
}

// TestCellReadsUseFilters: with the cell comparer, reads of cells across
// flushed tables skip tables by their bloom filters and read what was
// written; a DB made without it (an older checkpoint) opens with it asked
// for, reads the same, and scans.
func TestCellReadsUseFilters(t *testing.T) {
	write := func(d *DB, from, to int) {
		t.Helper()
		b := d.NewBundle()
		for i := from; i < to; i++ {
			c := Cell{KeyGroup: i % 4, Transform: "e1", StateID: "v", Key: fmt.Appendf(nil, "k%d", i)}
			if err := b.ClearBag(c); err != nil {
				t.Fatal(err)
			}
			if err := b.AppendBag(c, fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := d.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func(d *DB) {
		t.Helper()
		b := d.NewBundle()
		defer b.Discard()
		for i := range 400 {
			c := Cell{KeyGroup: i % 4, Transform: "e1", StateID: "v", Key: fmt.Appendf(nil, "k%d", i)}
			got, err := b.ReadBag(c)
			if want := fmt.Sprintf("v%d", i); err != nil || string(got) != want {
				t.Fatalf("cell %d: read %q, %v; want %q", i, got, err, want)
			}
		}
	}
	for _, cells := range []bool{false, true} {
		t.Run(fmt.Sprintf("cells=%v", cells), func(t *testing.T) {
			d := openTest(t, Options{Cells: cells})
			for i := 0; i < 400; i += 100 {
				write(d, i, i+100) // four tables in L0
			}
			before := d.pdb.Metrics().Filter.Hits
			readAll(d)
			m := d.pdb.Metrics()
			hits := m.Filter.Hits - before
			// Each cell is in one of the L0 tables and the filters of the
			// others skip it, for as long as compactions (in the
			// background; L6 tables' filters are not read) leave them.
			if cells && hits == 0 && m.Levels[0].TablesCount > 1 {
				t.Errorf("no filter hits reading 400 cells with %d tables in L0: the reads did not skip tables", m.Levels[0].TablesCount)
			}
			if !cells && hits != 0 {
				t.Errorf("%d filter hits without the cell comparer", hits)
			}
		})
	}
	t.Run("older DB", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "db")
		d, err := Open(Options{Dir: dir, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		write(d, 0, 400)
		d.Close()
		d = openTest(t, Options{Dir: dir, MustExist: true, Cells: true})
		if d.cells {
			t.Fatal("a DB made with the default comparer was opened with the cell comparer")
		}
		readAll(d)
	})
}
