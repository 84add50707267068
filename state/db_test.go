package state

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTest(t *testing.T, o Options) *DB {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "db")
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	d, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestOpenOptions(t *testing.T) {
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open with empty Dir succeeded")
	}
	dir := filepath.Join(t.TempDir(), "a", "b", "db") // created if missing
	d := openTest(t, Options{Dir: dir})
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST-000001")); err != nil {
		t.Errorf("no manifest in %s: %v", dir, err)
	}
	if got := d.Pebble().FormatMajorVersion(); got != formatMajorVersion || got < pebble.FormatVirtualSSTables {
		t.Errorf("format major version %d, want %d (>= FormatVirtualSSTables)", got, formatMajorVersion)
	}
	if d.Err() != nil {
		t.Errorf("Err() = %v on a fresh db", d.Err())
	}
}

// TestExciseWorks is the reason for the pinned format version: excising a
// key-group range (rescaling) must be supported.
func TestExciseWorks(t *testing.T) {
	d := openTest(t, Options{})
	g := d.GroupBuffer([]byte("g"))
	for kg := range 4 {
		if err := g.Add(kg, []byte("k"), nil, 0, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	span := pebble.KeyRange{Start: []byte("g\x00\x01"), End: []byte("g\x00\x03")}
	if err := d.Pebble().Excise(context.Background(), span); err != nil {
		t.Fatalf("Excise: %v", err)
	}
	var kgs []int
	if err := g.ScanKeys(0, 4, func(kg int, _ []byte, _ []Record) error {
		kgs = append(kgs, kg)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(kgs) != 2 || kgs[0] != 0 || kgs[1] != 3 {
		t.Fatalf("after excising key groups 1-2, scan visited %v", kgs)
	}
}

func TestSharedCacheAndClose(t *testing.T) {
	c := NewCache(8 << 20)
	d1 := openTest(t, Options{Cache: c, MemTableSize: 1 << 20})
	d2 := openTest(t, Options{Cache: c})
	c.Close() // the DBs keep their own references
	c.Close() // idempotent
	for _, d := range []*DB{d1, d2} {
		g := d.GroupBuffer([]byte("x"))
		if err := g.Add(1, []byte("k"), []byte("w"), 5, []byte("v")); err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := g.ScanKeys(0, DefaultMaxParallelism, func(int, []byte, []Record) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("visited %d keys, want 1", n)
		}
	}
	if err := d1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d1.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed", err)
	}
	if err := d1.GroupBuffer([]byte("x")).Add(0, nil, nil, 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Add after Close = %v, want ErrClosed", err)
	}
	if d2.DiskUsage() == 0 {
		t.Error("DiskUsage() = 0 for an open db")
	}
}

// TestCorruptionReturnsError corrupts an sstable in place (same size) and
// expects an error from the scan, a failed DB, and a live process: Pebble's
// default would call Fatalf and exit.
func TestCorruptionReturnsError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	d := openTest(t, Options{Dir: dir})
	g := d.GroupBuffer([]byte("g"))
	val := make([]byte, 100)
	for i := range 20000 {
		val[0] = byte(i)
		if err := g.Add(i%128, []byte{byte(i), byte(i >> 8)}, []byte("w"), int64(i), val); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstables written")
	}
	for _, p := range ssts {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 64; i < len(b)/2; i += 97 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d2, err := Open(Options{Dir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Open of a db with a same-size corrupted sstable: %v (Pebble opens these; the first read fails)", err)
	}
	defer d2.Close()
	err = d2.GroupBuffer([]byte("g")).ScanKeys(0, 128, func(int, []byte, []Record) error { return nil })
	if err == nil {
		t.Fatal("scan of a corrupted db succeeded")
	}
	if !errors.Is(err, ErrDBFailed) || !errors.Is(d2.Err(), ErrDBFailed) {
		t.Fatalf("after corruption Err() = %v, want ErrDBFailed (scan err: %v)", d2.Err(), err)
	}
	if err := d2.GroupBuffer([]byte("g")).Add(0, nil, nil, 0, nil); !errors.Is(err, ErrDBFailed) {
		t.Fatalf("Add on a failed db = %v, want ErrDBFailed", err)
	}
}

func TestOpenMustExist(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "restored")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if d, err := Open(Options{Dir: dir, MustExist: true}); err == nil {
		d.Close()
		t.Fatal("opened an empty directory with MustExist: a broken restore would look like empty state")
	}
	d, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	d, err = Open(Options{Dir: dir, MustExist: true})
	if err != nil {
		t.Fatalf("reopening an existing DB with MustExist: %v", err)
	}
	d.Close()
}

// TestForeignFileInDBDir: Pebble opens a directory that also holds a file
// of its own (a restored checkpoint's pending input sits beside the DB's
// files until the subtask reads it).
func TestForeignFileInDBDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	d := openTest(t, Options{Dir: dir})
	b := d.NewBundle()
	c := Cell{KeyGroup: 1, Transform: "t", StateID: "s", Window: []byte("w"), Key: []byte("k")}
	if err := b.AppendBag(c, []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := d.Pebble().Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "weir-pending-input"), []byte{1, 'x'}, 0o644); err != nil {
		t.Fatal(err)
	}
	d2 := openTest(t, Options{Dir: dir, MustExist: true})
	r := d2.NewBundle()
	defer r.Discard()
	if got, err := r.ReadBag(c); err != nil || string(got) != "v" {
		t.Fatalf("read %q, %v; want v", got, err)
	}
}
