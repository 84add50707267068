package runner_test

import (
	"strings"
	"testing"
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
