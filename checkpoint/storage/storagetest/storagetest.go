// Package storagetest owns test helpers for storage.Storage: the behaviour
// contract every implementation must meet (Run) and an in-process fake GCS
// store (FakeGCS), in the style of net/http/httptest.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	gcs "cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// FakeGCS opens url (gs://bucket/prefix) against a new in-process fake GCS
// server without a listener, whose bucket exists and is empty. Everything is
// released by t.Cleanup.
func FakeGCS(t testing.TB, url string, opts ...storage.Option) storage.Storage {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	bucket := strings.SplitN(strings.TrimPrefix(url, "gs://"), "/", 2)[0]
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	client := srv.Client()
	t.Cleanup(func() { _ = client.Close() })
	st, err := storage.Open(context.Background(), url, append(opts, storage.WithGCSClient(client))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// FakeGCSClient returns a client of a new in-process fake GCS server in
// which bucket exists; pass it with storage.WithGCSClient. Everything is
// released by t.Cleanup.
func FakeGCSClient(t testing.TB, bucket string) *gcs.Client {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	client := srv.Client()
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// FakeGCSListener starts a fake GCS server listening on 127.0.0.1 over
// HTTP, with bucket created, for other processes: they reach it with
// STORAGE_EMULATOR_HOST=host. client talks to it from this process.
func FakeGCSListener(t testing.TB, bucket string) (host string, client *gcs.Client) {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket})
	client = srv.Client()
	t.Cleanup(func() { _ = client.Close() })
	return strings.TrimPrefix(srv.URL(), "http://"), client
}

// Run runs the contract against stores made by open, each test on a new,
// empty store.
func Run(t *testing.T, open func(t *testing.T) storage.Storage) {
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, context.Background(), open(t))
		})
	}
}

var contract = []struct {
	name string
	run  func(t *testing.T, ctx context.Context, st storage.Storage)
}{
	{"put get overwrite stat", func(t *testing.T, ctx context.Context, st storage.Storage) {
		mustPut(t, st, "a/b/c", "one")
		expect(t, st, "a/b/c", "one")
		mustPut(t, st, "a/b/c", "second version")
		expect(t, st, "a/b/c", "second version")
		if n, err := st.Stat(ctx, "a/b/c"); err != nil || n != int64(len("second version")) {
			t.Fatalf("Stat = %d, %v", n, err)
		}
		mustPut(t, st, "empty", "")
		expect(t, st, "empty", "")
		if n, err := st.Stat(ctx, "empty"); err != nil || n != 0 {
			t.Fatalf("Stat(empty) = %d, %v", n, err)
		}
	}},
	{"large put", func(t *testing.T, ctx context.Context, st storage.Storage) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 70_000) // > 4 GCS chunks
		if err := st.Put(ctx, "big", bytes.NewReader(big)); err != nil {
			t.Fatal(err)
		}
		expect(t, st, "big", string(big))
	}},
	{"missing", func(t *testing.T, ctx context.Context, st storage.Storage) {
		if _, err := st.Get(ctx, "no/such"); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "no/such") {
			t.Fatalf("Get missing: %v, want ErrNotFound naming the object", err)
		}
		if _, err := st.Stat(ctx, "no/such"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat missing: %v", err)
		}
		mustPut(t, st, "dir/file", "x")
		if _, err := st.Stat(ctx, "dir"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat of a 'directory': %v, want ErrNotFound", err)
		}
		if err := st.Delete(ctx, "no/such"); err != nil {
			t.Fatalf("Delete missing: %v", err)
		}
	}},
	{"put if absent", func(t *testing.T, ctx context.Context, st storage.Storage) {
		if err := st.PutIfAbsent(ctx, "x/_metadata", []byte("first")); err != nil {
			t.Fatal(err)
		}
		err := st.PutIfAbsent(ctx, "x/_metadata", []byte("second"))
		if !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), "x/_metadata") {
			t.Fatalf("second PutIfAbsent: %v, want ErrExists naming the object", err)
		}
		expect(t, st, "x/_metadata", "first")
		mustPut(t, st, "y", "put")
		if err := st.PutIfAbsent(ctx, "y", nil); !errors.Is(err, storage.ErrExists) {
			t.Fatalf("PutIfAbsent over Put: %v", err)
		}
	}},
	{"concurrent put if absent", func(t *testing.T, ctx context.Context, st storage.Storage) {
		for round := range 3 {
			name := fmt.Sprintf("race/%d/_metadata", round)
			const n = 12
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() { errs[i] = st.PutIfAbsent(ctx, name, []byte(fmt.Sprintf("writer %d", i))) })
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("round %d: writers %d and %d both won", round, winner, i)
				case err == nil:
					winner = i
				case !errors.Is(err, storage.ErrExists):
					t.Fatalf("round %d writer %d: %v", round, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody won", round)
			}
			expect(t, st, name, fmt.Sprintf("writer %d", winner))
		}
	}},
	{"versioned put and delete", func(t *testing.T, ctx context.Context, st storage.Storage) {
		const name = "j/_lease"
		if _, _, err := st.GetVersion(ctx, name); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), name) {
			t.Fatalf("GetVersion of a missing object: %v, want ErrNotFound naming it", err)
		}
		v1, err := st.PutIf(ctx, name, []byte("one"), storage.NoVersion)
		if err != nil || v1 == storage.NoVersion {
			t.Fatalf("PutIf(NoVersion) = %q, %v", v1, err)
		}
		expectVersion(t, st, name, "one", v1)
		if _, err := st.PutIf(ctx, name, []byte("other"), storage.NoVersion); !errors.Is(err, storage.ErrExists) || !strings.Contains(err.Error(), name) {
			t.Fatalf("PutIf(NoVersion) of an existing object: %v, want ErrExists naming it", err)
		}
		v2, err := st.PutIf(ctx, name, []byte("two"), v1)
		if err != nil || v2 == v1 || v2 == storage.NoVersion {
			t.Fatalf("PutIf(v1) = %q, %v; want a new version", v2, err)
		}
		expectVersion(t, st, name, "two", v2)
		if _, err := st.PutIf(ctx, name, []byte("stale"), v1); !errors.Is(err, storage.ErrChanged) || !strings.Contains(err.Error(), name) {
			t.Fatalf("PutIf with a stale version: %v, want ErrChanged naming the object", err)
		}
		if err := st.DeleteIf(ctx, name, v1); !errors.Is(err, storage.ErrChanged) {
			t.Fatalf("DeleteIf with a stale version: %v, want ErrChanged", err)
		}
		expectVersion(t, st, name, "two", v2)
		if err := st.DeleteIf(ctx, name, v2); err != nil {
			t.Fatalf("DeleteIf(current version): %v", err)
		}
		if _, err := st.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat after DeleteIf: %v", err)
		}
		if err := st.DeleteIf(ctx, name, v2); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("DeleteIf of a missing object: %v, want ErrNotFound", err)
		}
		if _, err := st.PutIf(ctx, name, []byte("ghost"), v2); !errors.Is(err, storage.ErrChanged) {
			t.Fatalf("PutIf(v2) of a deleted object: %v, want ErrChanged", err)
		}
		if got, err := st.List(ctx, ""); err != nil || len(got) != 0 {
			t.Fatalf("List = %q, %v: a failed PutIf left something", got, err)
		}
		// PutIfAbsent and PutIf create alike.
		if err := st.PutIfAbsent(ctx, name, []byte("absent")); err != nil {
			t.Fatal(err)
		}
		_, v3, err := st.GetVersion(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutIf(ctx, name, []byte("three"), v3); err != nil {
			t.Fatalf("PutIf over PutIfAbsent: %v", err)
		}
		expect(t, st, name, "three")
	}},
	{"concurrent put if", func(t *testing.T, ctx context.Context, st storage.Storage) {
		const name = "race/_lease"
		v, err := st.PutIf(ctx, name, []byte("start"), storage.NoVersion)
		if err != nil {
			t.Fatal(err)
		}
		for round := range 3 {
			const n = 8
			vs := make([]storage.Version, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					vs[i], errs[i] = st.PutIf(ctx, name, []byte(fmt.Sprintf("round %d writer %d", round, i)), v)
				})
			}
			wg.Wait()
			winner := -1
			for i, err := range errs {
				switch {
				case err == nil && winner >= 0:
					t.Fatalf("round %d: writers %d and %d both replaced version %s", round, winner, i, v)
				case err == nil:
					winner = i
				case !errors.Is(err, storage.ErrChanged):
					t.Fatalf("round %d writer %d: %v", round, i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("round %d: nobody won", round)
			}
			v = vs[winner]
			expectVersion(t, st, name, fmt.Sprintf("round %d writer %d", round, winner), v)
		}
		// A delete and a replace of one version: one of them.
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() { _, errs[0] = st.PutIf(ctx, name, []byte("replaced"), v) })
		wg.Go(func() { errs[1] = st.DeleteIf(ctx, name, v) })
		wg.Wait()
		switch {
		case errs[0] == nil && errs[1] == nil:
			t.Fatal("a PutIf and a DeleteIf of one version both succeeded")
		case errs[0] == nil:
			if !errors.Is(errs[1], storage.ErrChanged) {
				t.Fatalf("DeleteIf after the PutIf won: %v, want ErrChanged", errs[1])
			}
			expect(t, st, name, "replaced")
		case errs[1] == nil:
			if !errors.Is(errs[0], storage.ErrChanged) {
				t.Fatalf("PutIf after the DeleteIf won: %v, want ErrChanged", errs[0])
			}
			if _, err := st.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("the object survived the DeleteIf that won: %v", err)
			}
		default:
			t.Fatalf("neither PutIf (%v) nor DeleteIf (%v) succeeded", errs[0], errs[1])
		}
	}},
	{"list", func(t *testing.T, ctx context.Context, st storage.Storage) {
		for _, n := range []string{"j/chk-10/_metadata", "j/chk-2/_metadata", "j/chk-2/s-0/MANIFEST", "j/shared/ab.sst", "j/chk", "k/x"} {
			mustPut(t, st, n, n)
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"j/chk-", []string{"j/chk-10/_metadata", "j/chk-2/_metadata", "j/chk-2/s-0/MANIFEST"}},
			{"j/chk", []string{"j/chk", "j/chk-10/_metadata", "j/chk-2/_metadata", "j/chk-2/s-0/MANIFEST"}},
			{"j/shared/", []string{"j/shared/ab.sst"}},
			{"j/nothing/", nil},
			{"zzz", nil},
			{"", []string{"j/chk", "j/chk-10/_metadata", "j/chk-2/_metadata", "j/chk-2/s-0/MANIFEST", "j/shared/ab.sst", "k/x"}},
		} {
			got, err := st.List(ctx, tc.prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", tc.prefix, err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		}
	}},
	{"delete", func(t *testing.T, ctx context.Context, st storage.Storage) {
		mustPut(t, st, "d/e/f", "1")
		mustPut(t, st, "d/g", "2")
		if err := st.Delete(ctx, "d/e/f"); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Get(ctx, "d/e/f"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if got, _ := st.List(ctx, "d/"); !slices.Equal(got, []string{"d/g"}) {
			t.Fatalf("List after Delete = %q", got)
		}
		mustPut(t, st, "d/e/f", "3") // the emptied directory comes back
		expect(t, st, "d/e/f", "3")
	}},
	{"concurrent put and delete in one directory", func(t *testing.T, ctx context.Context, st storage.Storage) {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for j := range 15 {
					name := fmt.Sprintf("c/d/%d-%d", i, j)
					if err := st.Put(ctx, name, strings.NewReader(name)); err != nil {
						t.Error(err)
						return
					}
					if err := st.Delete(ctx, name); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if got, err := st.List(ctx, "c/"); err != nil || len(got) != 0 {
			t.Fatalf("List = %q, %v; want nothing", got, err)
		}
	}},
	{"failed reader writes nothing", func(t *testing.T, ctx context.Context, st storage.Storage) {
		mustPut(t, st, "keep", "old")
		r := io.MultiReader(strings.NewReader("partial"), errReader{})
		if err := st.Put(ctx, "keep", r); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		expect(t, st, "keep", "old")
		if err := st.Put(ctx, "new", io.MultiReader(strings.NewReader("partial"), errReader{})); err == nil {
			t.Fatal("Put with a failing reader succeeded")
		}
		if _, err := st.Stat(ctx, "new"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("object of a failed Put exists: %v", err)
		}
		if got, _ := st.List(ctx, ""); !slices.Equal(got, []string{"keep"}) {
			t.Fatalf("List = %q: a failed Put left something", got)
		}
	}},
	{"cancelled context", func(t *testing.T, ctx context.Context, st storage.Storage) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := st.Put(cctx, "cancelled", strings.NewReader("x")); err == nil {
			t.Fatal("Put with a cancelled context succeeded")
		}
		if _, err := st.Stat(ctx, "cancelled"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("object of a cancelled Put: %v", err)
		}
	}},
	{"bad names", func(t *testing.T, ctx context.Context, st storage.Storage) {
		for _, n := range []string{"", "/abs", "a//b", "a/", "../x", "a/../b", ".hidden", "a/.weir-tmp-1", `a\b`, "a\x00b"} {
			if err := st.Put(ctx, n, strings.NewReader("x")); err == nil {
				t.Errorf("Put(%q) succeeded", n)
			}
			if err := st.PutIfAbsent(ctx, n, nil); err == nil || errors.Is(err, storage.ErrExists) {
				t.Errorf("PutIfAbsent(%q) = %v", n, err)
			}
			if _, err := st.Get(ctx, n); err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Get(%q) = %v, want a bad-name error", n, err)
			}
			if _, _, err := st.GetVersion(ctx, n); err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("GetVersion(%q) = %v, want a bad-name error", n, err)
			}
			if _, err := st.PutIf(ctx, n, nil, storage.NoVersion); err == nil || errors.Is(err, storage.ErrExists) {
				t.Errorf("PutIf(%q) = %v, want a bad-name error", n, err)
			}
			if err := st.DeleteIf(ctx, n, "1"); err == nil || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrChanged) {
				t.Errorf("DeleteIf(%q) = %v, want a bad-name error", n, err)
			}
		}
		if _, err := st.List(ctx, "../"); err == nil {
			t.Error("List(../) succeeded")
		}
	}},
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("reader broke") }

func mustPut(t *testing.T, st storage.Storage, name, data string) {
	t.Helper()
	if err := st.Put(context.Background(), name, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func expect(t *testing.T, st storage.Storage, name, want string) {
	t.Helper()
	r, err := st.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	if string(got) != want {
		t.Fatalf("%s = %.40q (%d bytes), want %.40q (%d bytes)", name, got, len(got), want, len(want))
	}
}

// expectVersion checks that name holds want at version v.
func expectVersion(t *testing.T, st storage.Storage, name, want string, v storage.Version) {
	t.Helper()
	got, gv, err := st.GetVersion(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want || gv != v {
		t.Fatalf("GetVersion(%s) = %q at %s, want %q at %s", name, got, gv, want, v)
	}
}
