package state

import "testing"

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
