package storage_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/checkpoint/storage/storagetest"
)

func TestContract(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage {
			st, err := storage.Open(context.Background(), "file://"+t.TempDir()+"/root")
			if err != nil {
				t.Fatal(err)
			}
			return st
		})
	})
	t.Run("gcs", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Storage {
			// Small chunks, so that the large object takes several requests.
			return storagetest.FakeGCS(t, "gs://bucket/some/prefix", storage.WithChunkSize(256<<10))
		})
	})
}

func TestOpenURLs(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"file://relative/dir", "file:relative", "s3://bucket/x", "gs:///nobucket", "gs://b/../x", "file:///tmp?x=1", "::"} {
		if st, err := storage.Open(ctx, bad); err == nil {
			t.Errorf("Open(%q) = %v, want an error", bad, st)
		}
	}
	dir := t.TempDir()
	st, err := storage.Open(ctx, "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.String(), "file://"+dir; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if err := st.Put(ctx, "f", strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Open(ctx, "file://"+dir+"/f"); err == nil {
		t.Error("Open of a file as root succeeded")
	}
}

// TestGCSPrefix checks that two stores in one bucket under different
// prefixes do not see each other's objects, and where objects land.
func TestGCSPrefix(t *testing.T) {
	ctx := context.Background()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{NoListener: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: "b"})
	client := srv.Client()
	defer client.Close()
	a := storage.NewGCS(client, "b", "jobs/a")
	bb, err := storage.Open(ctx, "gs://b/jobs/ab/", storage.WithGCSClient(client))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "x/y", strings.NewReader("a")); err != nil {
		t.Fatal(err)
	}
	if err := bb.PutIfAbsent(ctx, "x/y", []byte("b")); err != nil {
		t.Fatalf("same name under another prefix: %v", err)
	}
	if got, err := bb.List(ctx, ""); err != nil || !slices.Equal(got, []string{"x/y"}) {
		t.Fatalf("List = %q, %v", got, err)
	}
	obj, err := srv.GetObject("b", "jobs/a/x/y")
	if err != nil || string(obj.Content) != "a" {
		t.Fatalf("object jobs/a/x/y: %v %q", err, obj.Content)
	}
	if got := a.String(); got != "gs://b/jobs/a/" {
		t.Errorf("String() = %q", got)
	}
	if _, err := a.Get(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "gs://b/jobs/a/nope") {
		t.Errorf("Get missing: %v, want ErrNotFound naming gs://b/jobs/a/nope", err)
	}
}
