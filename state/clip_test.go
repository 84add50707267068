package state

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClip: a DB restored from a checkpoint and clipped to a key-group
// range holds exactly the keys of the original outside what was clipped
// (keyed state of other key groups, under the key-group-first layout and
// a GroupBuffer's prefix; parked input unless kept), and so does a
// checkpoint of it reopened.
func TestClip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	const kgs = 8
	gp := []byte("g")
	for round := range 6 {
		src := openTest(t, Options{})
		apply(t, "workload", loadWorkload(r, kgs, 30), 1+r.IntN(10), src.NewBundle)
		buf := src.GroupBuffer(gp)
		for i := range 40 {
			must(t, buf.Add(r.IntN(kgs), []byte(fmt.Sprintf("k%d", r.IntN(5))), []byte{1}, int64(i), []byte("gv")))
		}
		must(t, buf.Flush())
		sb := src.NewSideBatch()
		must(t, sb.AddValues(0, []byte{1}, []byte("side")))
		must(t, sb.Commit())
		for i := range 3 {
			must(t, src.Park(int64(i), int64(i), []byte("parked")))
		}
		chk := filepath.Join(t.TempDir(), "chk")
		must(t, src.Checkpoint(chk))

		lo := r.IntN(kgs)
		hi := lo + 1 + r.IntN(kgs-lo)
		keepParked := r.IntN(2) == 0
		name := fmt.Sprintf("round %d: [%d, %d) parked %v", round, lo, hi, keepParked)
		removed := func(k []byte) bool {
			outside := func(b []byte) bool {
				if len(b) < 2 {
					return false
				}
				kg := int(binary.BigEndian.Uint16(b))
				return kg < kgs && (kg < lo || kg >= hi)
			}
			switch {
			case outside(k):
				return true
			case bytes.HasPrefix(k, gp) && outside(k[len(gp):]):
				return true
			}
			return !keepParked && (bytes.HasPrefix(k, unkeyedPrefix(spaceParked)) || bytes.HasPrefix(k, unkeyedPrefix(spaceParkedHold)))
		}
		var want strings.Builder
		all := rawKeys(t, src)
		for _, kv := range all {
			if !removed(kv[0]) {
				fmt.Fprintf(&want, "%x=%x\n", kv[0], kv[1])
			}
		}

		dir := filepath.Join(t.TempDir(), "db")
		must(t, os.CopyFS(dir, os.DirFS(chk)))
		d := openTest(t, Options{Dir: dir, MustExist: true})
		must(t, d.Clip(context.Background(), lo, hi, kgs, [][]byte{nil, gp}, keepParked))
		if got := rawDump(t, d); dropMark(got) != dropMark(want.String()) {
			t.Fatalf("%s: clipped DB\ngot:\n%s\nwant:\n%s", name, got, want.String())
		}
		again := filepath.Join(t.TempDir(), "again")
		must(t, d.Checkpoint(again))
		reopened := openTest(t, Options{Dir: again, MustExist: true})
		if got := rawDump(t, reopened); dropMark(got) != dropMark(want.String()) {
			t.Fatalf("%s: checkpoint of the clipped DB\ngot:\n%s\nwant:\n%s", name, got, want.String())
		}
	}
}

// TestClipRefuses: ranges that are not key groups, and prefixes whose
// key-group ranges meet, are refused.
func TestClipRefuses(t *testing.T) {
	d := openTest(t, Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		lo, hi, kgs int
		prefixes    [][]byte
		want        string
	}{
		{3, 3, 8, nil, "not a range"},
		{0, 9, 8, nil, "not a range"},
		{0, 1, MaxKeyGroups + 1, nil, "not a range"},
		{0, 1, 0x6800, [][]byte{nil, []byte("g")}, "meet the keys under prefix 67"},
	} {
		err := d.Clip(ctx, tc.lo, tc.hi, tc.kgs, tc.prefixes, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Clip(%d, %d, %d, %q) = %v, want %q", tc.lo, tc.hi, tc.kgs, tc.prefixes, err, tc.want)
		}
	}
}

func rawKeys(t *testing.T, d *DB) [][2][]byte {
	t.Helper()
	it, err := d.pdb.NewIter(nil)
	must(t, err)
	defer it.Close()
	var out [][2][]byte
	for it.First(); it.Valid(); it.Next() {
		out = append(out, [2][]byte{bytes.Clone(it.Key()), bytes.Clone(it.Value())})
	}
	must(t, it.Error())
	return out
}

func rawDump(t *testing.T, d *DB) string {
	var sb strings.Builder
	for _, kv := range rawKeys(t, d) {
		fmt.Fprintf(&sb, "%x=%x\n", kv[0], kv[1])
	}
	return sb.String()
}

// dropMark drops the sequence mark line, which a checkpoint rewrites.
func dropMark(dump string) string {
	mark := fmt.Sprintf("%x=", unkeyedPrefix(spaceSeqMark))
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if !strings.HasPrefix(l, mark) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
