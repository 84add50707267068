package state

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// model is the in-memory reference for a GroupBuffer.
type model map[int]map[string][]Record // key group -> key -> records in arrival order

func (m model) add(kg int, key, win []byte, ts int64, val []byte) {
	if m[kg] == nil {
		m[kg] = map[string][]Record{}
	}
	m[kg][string(key)] = append(m[kg][string(key)], Record{Window: bytes.Clone(win), Timestamp: ts, Value: bytes.Clone(val)})
}

type scanned struct {
	kg   int
	key  string
	recs []Record
}

// expect returns what ScanKeys over [start,end) must visit.
func (m model) expect(start, end int) []scanned {
	var out []scanned
	for kg := start; kg < end; kg++ {
		keys := make([]string, 0, len(m[kg]))
		for k := range m[kg] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			recs := slices.Clone(m[kg][k])
			slices.SortStableFunc(recs, func(a, b Record) int { return bytes.Compare(a.Window, b.Window) })
			out = append(out, scanned{kg, k, recs})
		}
	}
	return out
}

// scanAll collects a scan, copying everything (the slices are only valid
// during the callback).
func scanAll(t *testing.T, g *GroupBuffer, start, end int) []scanned {
	t.Helper()
	var out []scanned
	err := g.ScanKeys(start, end, func(kg int, key []byte, recs []Record) error {
		s := scanned{kg: kg, key: string(key)}
		for _, r := range recs {
			s.recs = append(s.recs, Record{Window: bytes.Clone(r.Window), Timestamp: r.Timestamp, Value: bytes.Clone(r.Value)})
		}
		out = append(out, s)
		return nil
	})
	if err != nil {
		t.Fatalf("ScanKeys(%d, %d): %v", start, end, err)
	}
	return out
}

func checkScan(t *testing.T, what string, got, want []scanned) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: visited %d keys, want %d", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.kg != w.kg || g.key != w.key || len(g.recs) != len(w.recs) {
			t.Fatalf("%s: key #%d = (kg %d, %q, %d recs), want (kg %d, %q, %d recs)", what, i, g.kg, g.key, len(g.recs), w.kg, w.key, len(w.recs))
		}
		for j := range w.recs {
			gr, wr := g.recs[j], w.recs[j]
			if !bytes.Equal(gr.Window, wr.Window) || gr.Timestamp != wr.Timestamp || !bytes.Equal(gr.Value, wr.Value) {
				t.Fatalf("%s: key %q record %d = {%q %d %q}, want {%q %d %q}", what, w.key, j, gr.Window, gr.Timestamp, gr.Value, wr.Window, wr.Timestamp, wr.Value)
			}
		}
	}
}

// Keys and windows that stress the encoding: empty, embedded zeros, prefixes
// of each other, 0xFF.
var trickyParts = [][]byte{{}, {0}, {0, 0}, {0, 1}, {0, 0xff}, {1}, {0xff}, []byte("a"), []byte("a\x00"), []byte("ab"), []byte("a\x00b")}

func TestGroupBufferMatchesModel(t *testing.T) {
	d := openTest(t, Options{MemTableSize: 1 << 20})
	rng := rand.New(rand.NewPCG(1, 2))
	g1, g2 := d.GroupBuffer([]byte("g1")), d.GroupBuffer([]byte("g2"))
	m1, m2 := model{}, model{}
	keys := slices.Clone(trickyParts)
	for i := range 300 {
		keys = append(keys, fmt.Appendf(nil, "key-%d", i))
	}
	for round := range 5 {
		for range 3000 {
			key := keys[rng.IntN(len(keys))]
			kg := KeyGroup(key, DefaultMaxParallelism)
			win := trickyParts[rng.IntN(len(trickyParts))]
			ts := rng.Int64N(2000) - 1000
			val := fmt.Appendf(nil, "v%d", rng.IntN(5)) // many duplicates
			g, m := g1, m1
			if rng.IntN(4) == 0 {
				g, m = g2, m2
			}
			if err := g.Add(kg, key, win, ts, val); err != nil {
				t.Fatal(err)
			}
			m.add(kg, key, win, ts, val)
			if rng.IntN(500) == 0 {
				if err := g.Flush(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if round == 2 { // mix sstables and memtable data
			if err := d.Pebble().Flush(); err != nil {
				t.Fatal(err)
			}
		}
		// ScanKeys must flush the pending batch itself.
		checkScan(t, fmt.Sprintf("round %d g1", round), scanAll(t, g1, 0, DefaultMaxParallelism), m1.expect(0, DefaultMaxParallelism))
		checkScan(t, fmt.Sprintf("round %d g2", round), scanAll(t, g2, 0, DefaultMaxParallelism), m2.expect(0, DefaultMaxParallelism))
	}
	// Range restriction: each subtask of P=3 sees exactly its key groups.
	var total int
	for s := range 3 {
		start, end := KeyGroupRange(s, 3, DefaultMaxParallelism)
		got := scanAll(t, g1, start, end)
		checkScan(t, fmt.Sprintf("subtask %d [%d,%d)", s, start, end), got, m1.expect(start, end))
		total += len(got)
	}
	if want := len(m1.expect(0, DefaultMaxParallelism)); total != want {
		t.Fatalf("subtask scans visited %d keys, want %d", total, want)
	}
	if got := scanAll(t, g1, 5, 5); len(got) != 0 {
		t.Fatalf("empty range visited %d keys", len(got))
	}
	for _, r := range [][2]int{{-1, 3}, {4, 3}, {0, MaxKeyGroups + 1}} {
		if err := g1.ScanKeys(r[0], r[1], func(int, []byte, []Record) error { return nil }); err == nil {
			t.Errorf("ScanKeys(%d, %d) accepted a bad range", r[0], r[1])
		}
	}
	if err := g1.Add(MaxKeyGroups, nil, nil, 0, nil); err == nil {
		t.Error("Add accepted key group MaxKeyGroups")
	}
}

func TestGroupBufferClear(t *testing.T) {
	d := openTest(t, Options{})
	g, other := d.GroupBuffer([]byte("c1")), d.GroupBuffer([]byte("c2"))
	for i := range 100 {
		for _, b := range []*GroupBuffer{g, other} {
			if err := b.Add(i%DefaultMaxParallelism, fmt.Appendf(nil, "k%d", i), nil, int64(i), []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := g.Add(7, []byte("pending"), nil, 0, nil); err != nil { // never flushed
		t.Fatal(err)
	}
	if err := g.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := scanAll(t, g, 0, MaxKeyGroups); len(got) != 0 {
		t.Fatalf("after Clear visited %d keys, first %q", len(got), got[0].key)
	}
	if got := scanAll(t, other, 0, DefaultMaxParallelism); len(got) != 100 {
		t.Fatalf("Clear of c1 left c2 with %d keys, want 100", len(got))
	}
	if err := g.Add(3, []byte("again"), []byte("w"), 1, []byte("v")); err != nil {
		t.Fatal(err)
	}
	got := scanAll(t, g, 0, DefaultMaxParallelism)
	checkScan(t, "after Clear and Add", got, []scanned{{3, "again", []Record{{[]byte("w"), 1, []byte("v")}}}})
}

// TestGroupBufferReopen checks that the sequence counter survives a reopen:
// otherwise new records would overwrite old ones with the same key and window.
func TestGroupBufferReopen(t *testing.T) {
	dir := t.TempDir()
	d := openTest(t, Options{Dir: dir})
	g := d.GroupBuffer([]byte("r"))
	m := model{}
	add := func(g *GroupBuffer, val string) {
		t.Helper()
		if err := g.Add(9, []byte("k"), []byte("w"), 0, []byte(val)); err != nil {
			t.Fatal(err)
		}
		m.add(9, []byte("k"), []byte("w"), 0, []byte(val))
	}
	add(g, "first")
	add(g, "second")
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Pebble().Flush(); err != nil { // WAL is off: persist the memtable
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := openTest(t, Options{Dir: dir})
	g2 := d2.GroupBuffer([]byte("r"))
	add(g2, "third")
	checkScan(t, "after reopen", scanAll(t, g2, 0, DefaultMaxParallelism), m.expect(0, DefaultMaxParallelism))
}

func TestGroupBufferCallbackError(t *testing.T) {
	d := openTest(t, Options{})
	g := d.GroupBuffer([]byte("e"))
	for i := range 10 {
		if err := g.Add(i, []byte("k"), nil, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := g.ScanKeys(0, DefaultMaxParallelism, func(kg int, _ []byte, _ []Record) error {
		calls++
		if kg == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 4 {
		t.Fatalf("ScanKeys = %v after %d calls, want stop after 4", err, calls)
	}
}

// TestGroupBufferLarge writes ~300k records (~70 MB of values, larger than the
// memtable and cache) across several auto-flushes and checks the scan is exact
// and streams: the live heap during the scan stays far below the data size.
func TestGroupBufferLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("large test")
	}
	const (
		nKeys     = 30000
		perKey    = 10
		valueSize = 230
	)
	d := openTest(t, Options{Cache: nil, MemTableSize: 4 << 20})
	g := d.GroupBuffer([]byte("big"))
	rng := rand.New(rand.NewPCG(3, 4))
	val := make([]byte, valueSize)
	counts := map[string]int{}
	for i := range nKeys * perKey {
		key := fmt.Appendf(nil, "key-%07d", rng.IntN(nKeys))
		win := []byte{byte(i % 3)}
		binaryPutSeq(val, uint64(i))
		if err := g.Add(KeyGroup(key, DefaultMaxParallelism), key, win, int64(i), val); err != nil {
			t.Fatal(err)
		}
		counts[string(key)]++
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak uint64
	var prevKG int
	var prevKey []byte
	visited, records := 0, 0
	err := g.ScanKeys(0, DefaultMaxParallelism, func(kg int, key []byte, recs []Record) error {
		if kg < prevKG || (kg == prevKG && bytes.Compare(key, prevKey) <= 0) {
			return fmt.Errorf("key (%d, %q) after (%d, %q)", kg, key, prevKG, prevKey)
		}
		if kg != KeyGroup(key, DefaultMaxParallelism) {
			return fmt.Errorf("key %q reported in key group %d", key, kg)
		}
		prevKG, prevKey = kg, append(prevKey[:0], key...)
		if len(recs) != counts[string(key)] {
			return fmt.Errorf("key %q has %d records, want %d", key, len(recs), counts[string(key)])
		}
		for i := 1; i < len(recs); i++ {
			a, b := recs[i-1], recs[i]
			if c := bytes.Compare(a.Window, b.Window); c > 0 || (c == 0 && a.Timestamp >= b.Timestamp) {
				return fmt.Errorf("key %q records %d,%d out of order", key, i-1, i)
			}
		}
		visited++
		records += len(recs)
		if visited%5000 == 0 {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if visited != len(counts) || records != nKeys*perKey {
		t.Fatalf("visited %d keys and %d records, want %d and %d", visited, records, len(counts), nKeys*perKey)
	}
	const dataSize = nKeys * perKey * valueSize
	if peak > base+dataSize/4 {
		t.Fatalf("heap grew from %d to %d during the scan of %d bytes: not streaming", base, peak, dataSize)
	}
	t.Logf("heap during scan: base %d MiB, peak %d MiB; data %d MiB; disk %d MiB",
		base>>20, peak>>20, dataSize>>20, d.DiskUsage()>>20)
}

func binaryPutSeq(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
