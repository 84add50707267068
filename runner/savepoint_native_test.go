package runner_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/runner"
)

// TestSavepointNativeRescale rescales a checkpointed job 2 → 4 → 8 through
// two native savepoints (the subtasks' Pebble files; each new subtask
// restores the files of the one whose key groups held its own, and clips
// them), on a weir server in this process: the sink must commit exactly
// the uninterrupted run's per-key counts and sums (rescale). Started from
// the second savepoint at parallelism 3, whose subtasks' key groups would
// each span two of the savepoint's, the job is refused before it runs,
// naming the fix.
func TestSavepointNativeRescale(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	spURL, st, start := servedLives(t, "file")
	taken := rescale(t, spURL, st, start, []int{2, 4, 8}, "native")
	sp := crashSpec("native-refused")
	sp.Events *= 2
	refused := start(3, 3, taken[1], sp)
	err := <-refused.done
	if err == nil || !strings.Contains(err.Error(), "span subtasks of the savepoint (taken at parallelism 4)") || !strings.Contains(err.Error(), "canonical savepoint") {
		t.Fatalf("a start at parallelism 3 from a native savepoint taken at 4: %v; want it refused, naming the fix", err)
	}
}

// TestNativeSavepointPlanOnly: --savepoint_plan_only with the golden native
// savepoint (taken at parallelism 2) for a job at parallelism 3 runs
// nothing and says why the job would be refused: its subtasks' key groups
// span the savepoint's, and the fix.
func TestNativeSavepointPlanOnly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a job server")
	}
	defer setFlag(&jobopts.JobName, "native-plan")()
	dirs, err := filepath.Glob(filepath.Join("testdata", "savepoints-native", "savepoint-sp-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in testdata/savepoints-native, found %v (%v)", dirs, err)
	}
	abs, err := filepath.Abs(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	logs, logger := infoLogs()
	spec := crashSpec("native-plan")
	if err := restoreInto(t, "file://"+abs, runner.CheckpointConfig{SavepointPlanOnly: true}, crashPipeline(spec), logger); err != nil {
		t.Fatalf("a plan-only run: %v", err)
	}
	l := logs.String()
	for _, want := range []string{
		`transform \"CountPerKey/runner_test.keyCountFn\": restored`,
		`refused: native savepoint`,
		`which span subtasks of the savepoint (taken at parallelism 2): start the job at 2 or a multiple of it`,
		`the job would be refused`,
	} {
		if !strings.Contains(l, want) {
			t.Errorf("the plan does not say %s:\n%s", want, l)
		}
	}
}
