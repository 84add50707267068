package runner_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/savepoint/rewrite"
)

// TestRewrittenSavepointRestores: the golden savepoint (128 key groups)
// rewritten offline to 7 key groups, with its counting DoFn renamed, then
// back to 128, restores into the renamed pipeline at parallelism 3 and the
// job commits the exact result of the run the savepoint was taken of:
// every record reached its key's key group both ways (the way back
// refuses records that are not in their key's group; the restore finds
// state only under its key's group). The runner has no option for the
// job's max parallelism (the engine's default, 128, always), so the
// 7-group savepoint itself is refused, naming the key groups.
func TestRewrittenSavepointRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	dirs, err := filepath.Glob(filepath.Join("testdata", "savepoints", "savepoint-sp-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in testdata/savepoints, found %v (%v)", dirs, err)
	}
	golden, err := filepath.Abs(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	rewriteTo := func(srcURL string, o rewrite.Options) string {
		t.Helper()
		src, err := storage.NewFile(filepath.Dir(strings.TrimPrefix(srcURL, "file://")))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := storage.NewFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		res, err := rewrite.Rewrite(t.Context(), src, filepath.Base(srcURL), dst, o)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Regrouped {
			t.Fatalf("rewrite to %d key groups did not regroup", o.MaxParallelism)
		}
		return res.URL
	}
	small := rewriteTo("file://"+golden, rewrite.Options{MaxParallelism: 7, Rename: map[string]string{"CountPerKey": "Counter"}})
	back := rewriteTo(small, rewrite.Options{MaxParallelism: 128})

	defer setFlag(&jobopts.JobName, "golden")()
	srv := startWeirWith(t, runner.Config{
		Parallelism: 3,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: back},
	})
	want := crashSpec("savepoint-rewritten")
	want.PauseMS = 40 // the spec the savepoint was taken of, but for its sink
	fresh := want
	fresh.Events *= 2 // only a restored job commits want's result
	if err := runOn(t, srv, crashPipelineNamed(fresh, "Counter"), "loopback"); err != nil {
		t.Fatalf("the job started from the rewritten savepoint failed: %v", err)
	}
	checkCommitted(t, want, "started from the golden savepoint rewritten to 7 key groups and back, renamed")

	srv = startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: small},
	})
	err = runOn(t, srv, crashPipelineNamed(crashSpec("savepoint-rewritten-small"), "Counter"), "loopback")
	if err == nil || !strings.Contains(err.Error(), "has 7 key groups") || !strings.Contains(err.Error(), "--max_parallelism=7") {
		t.Fatalf("a savepoint of 7 key groups into a job of 128: err = %v, want a refusal naming the key groups and --max_parallelism", err)
	}

	// With --max_parallelism=7 the job takes it: 7 key groups on 3
	// subtasks, the exact result.
	srv = startWeirWith(t, runner.Config{
		Parallelism: 3,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: small, MaxParallelism: 7},
	})
	want7 := want
	want7.Sink = "savepoint-rewritten-7"
	fresh7 := want7
	fresh7.Events *= 2
	if err := runOn(t, srv, crashPipelineNamed(fresh7, "Counter"), "loopback"); err != nil {
		t.Fatalf("the job of 7 key groups started from the rewritten savepoint failed: %v", err)
	}
	checkCommitted(t, want7, "started from the golden savepoint rewritten to 7 key groups, --max_parallelism=7")
}
