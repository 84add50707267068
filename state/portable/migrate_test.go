package portable

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/weir-runner/weir/savepoint"
)

// TestImportMigrates: the values of a migrated state reach the migration
// whole, a cell (and map key) at a time, however many appends wrote
// them; an ordered list entry on its own; other states as they are.
func TestImportMigrates(t *testing.T) {
	st := func(kg int, id, userKey string, sortKey int64, v string) rec {
		return rec{Owner{savepoint.SectionTransforms, nameA}, &savepoint.StateRecord{KeyGroup: kg, Key: keyOf(kg), StateID: id, UserKey: []byte(userKey), SortKey: sortKey, Value: []byte(v)}}
	}
	recs := []rec{
		st(2, "bag", "", 0, "ab"), st(2, "bag", "", 0, "cd"), // one value in two appends
		st(3, "bag", "", 0, "x"),
		st(3, "seen", "k1", 0, "1"), st(3, "seen", "k1", 0, "2"), st(3, "seen", "k2", 0, "3"),
		st(3, "list", "", 5, "p"), st(3, "list", "", 5, "q"),
		{Owner{savepoint.SectionTransforms, nameB}, &savepoint.StateRecord{KeyGroup: 3, Key: keyOf(3), StateID: "count", Value: []byte("7")}},
	}
	var calls []string
	tg := target(nil, 1, 0)
	tg.Migrate = func(n, id string) func([]byte) ([]byte, error) {
		if n != nameA {
			return nil
		}
		return func(v []byte) ([]byte, error) {
			calls = append(calls, id+":"+string(v))
			return []byte("[" + string(v) + "]"), nil
		}
	}
	db := importAll(t, recs, 0, maxP, tg)
	want := []string{"bag:abcd", "bag:x", "seen:12", "seen:3", "list:p", "list:q"}
	if !slices.Equal(calls, want) {
		t.Errorf("migrated %q, want %q", calls, want)
	}
	b := db.NewBundle()
	defer b.Discard()
	for _, tc := range []struct {
		read func() ([]byte, error)
		want string
	}{
		{func() ([]byte, error) { return b.ReadBag(cell(2, trA, "bag", nil)) }, "[abcd]"},
		{func() ([]byte, error) { return b.ReadBag(cell(3, trA, "bag", nil)) }, "[x]"},
		{func() ([]byte, error) { return b.ReadMap(cell(3, trA, "seen", nil), []byte("k1")) }, "[12]"},
		{func() ([]byte, error) { return b.ReadMap(cell(3, trA, "seen", nil), []byte("k2")) }, "[3]"},
		{func() ([]byte, error) { return b.ReadBag(cell(3, trB, "count", nil)) }, "7"},
	} {
		got, err := tc.read()
		if err != nil || string(got) != tc.want {
			t.Errorf("read %q, %v; want %q", got, err, tc.want)
		}
	}
	list, err := b.ReadOrdered(cell(3, trA, "list", nil), math.MinInt64, math.MaxInt64)
	if err != nil || !bytes.Contains(list, []byte("[p]")) || !bytes.Contains(list, []byte("[q]")) {
		t.Errorf("ordered list %q, %v; want entries [p] and [q]", list, err)
	}

	// A migration that fails names the state and the key.
	tg.Migrate = func(string, string) func([]byte) ([]byte, error) {
		return func([]byte) ([]byte, error) { return nil, fmt.Errorf("no") }
	}
	im, err := NewImporter(openDB(t), 0, maxP, tg)
	must(t, err)
	must(t, im.Import(recs[0].owner, recs[0].r))
	if _, err := im.Close(); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`state "bag" of transforms "count/Stateful": migrating the value of key`)) {
		t.Errorf("Close after a failed migration: %v", err)
	}
}
