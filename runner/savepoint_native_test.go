package runner_test

import (
	"context"
	"path"
	"strings"
	"testing"

	"github.com/weir-runner/weir/savepoint"
)

// TestSavepointNativeRescale rescales a checkpointed job 2 → 4 → 8 through
// two native savepoints (the subtasks' Pebble files; each new subtask
// restores the files of the one whose key groups held its own, and clips
// them), on a weir server in this process: the sink must commit exactly
// the uninterrupted run's per-key counts and sums. Started from the second
// savepoint at parallelism 3, whose subtasks' key groups would each span
// two of the savepoint's, the job is refused before it runs, naming the
// fix.
func TestSavepointNativeRescale(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	_, st, start := servedLives(t, "file")
	want := crashSpec("native-rescale")
	want.PauseMS = 40
	fresh := want // a run from a savepoint must resume its positions: see rescale
	fresh.Events *= 2
	spPath := ""
	for n, par := range []int{2, 4, 8} {
		sp := want
		if n > 0 {
			sp = fresh
		}
		if n == 2 {
			refused := start(3, 3, spPath, fresh)
			err := <-refused.done
			if err == nil || !strings.Contains(err.Error(), "span subtasks of the savepoint (taken at parallelism 4)") || !strings.Contains(err.Error(), "canonical savepoint") {
				t.Fatalf("a start at parallelism 3 from a native savepoint taken at 4: %v; want it refused, naming the fix", err)
			}
		}
		l := start(n, par, spPath, sp)
		if n == 2 {
			if err := <-l.done; err != nil {
				t.Fatalf("run 3 (parallelism %d, from %s) failed: %v", par, spPath, err)
			}
			break
		}
		var id jobID
		select {
		case id = <-l.id:
		case err := <-l.done:
			t.Fatalf("run %d (parallelism %d) ended before its first checkpoint: %v", n+1, par, err)
		}
		if id.err != nil {
			t.Fatalf("run %d: %v", n+1, id.err)
		}
		spPath = savepointAndCancel(t, l.endpoint, id.id, "native")
		if err := <-l.done; err != nil {
			t.Fatalf("run %d (parallelism %d), cancelled: %v", n+1, par, err)
		}
		saved, err := savepoint.Open(context.Background(), st, path.Base(spPath))
		if err != nil {
			t.Fatal(err)
		}
		m := saved.Metadata()
		if !m.IsNative() || m.Parallelism != par || len(m.Native) == 0 {
			t.Fatalf("savepoint %d: type %q, parallelism %d, %d native DBs; want native, %d, some", n+1, m.Type, m.Parallelism, len(m.Native), par)
		}
		if err := saved.Verify(context.Background()); err != nil {
			t.Fatalf("savepoint %d: %v", n+1, err)
		}
	}
	checkCommitted(t, want, "rescaled 2 → 4 → 8 through two native savepoints")
}
