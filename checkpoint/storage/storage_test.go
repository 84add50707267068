package storage_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// counterChildEnv makes the test binary a child of
// TestFileConditionalAcrossProcesses: it increments the counter in the
// file:// store it names.
const counterChildEnv = "WEIR_STORAGE_TEST_COUNTER"

// incrementCounter adds one to the decimal counter object name by
// compare-and-swap, n times, retrying on ErrChanged.
func incrementCounter(ctx context.Context, st storage.Storage, name string, n int) error {
	for done := 0; done < n; {
		data, v, err := st.GetVersion(ctx, name)
		if err != nil {
			return err
		}
		c, err := strconv.Atoi(string(data))
		if err != nil {
			return err
		}
		_, err = st.PutIf(ctx, name, []byte(strconv.Itoa(c+1)), v)
		if errors.Is(err, storage.ErrChanged) {
			continue
		}
		if err != nil {
			return err
		}
		done++
	}
	return nil
}

// TestFileConditionalAcrossProcesses: processes (and goroutines in each)
// incrementing one counter with GetVersion and PutIf on file:// lose no
// increment: the check and the swap are atomic between processes too.
func TestFileConditionalAcrossProcesses(t *testing.T) {
	const perWriter, goroutines, children = 40, 2, 3
	ctx := context.Background()
	if dir := os.Getenv(counterChildEnv); dir != "" {
		st, err := storage.NewFile(dir)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				if err := incrementCounter(ctx, st, "c/counter", perWriter); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		return
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutIf(ctx, "c/counter", []byte("0"), storage.NoVersion); err != nil {
		t.Fatal(err)
	}
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range children {
		cmd := exec.Command(bin, "-test.run=^TestFileConditionalAcrossProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), counterChildEnv+"="+dir)
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("child: %v\n%s", err, out)
			}
		})
	}
	if err := incrementCounter(ctx, st, "c/counter", perWriter); err != nil {
		t.Error(err)
	}
	wg.Wait()
	data, err := os.ReadFile(filepath.Join(dir, "c", "counter"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(perWriter * (1 + children*goroutines)); string(data) != want {
		t.Fatalf("counter = %s, want %s: increments were lost", data, want)
	}
}
