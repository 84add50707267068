package runner_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/internal/testlog"
)

// childPipelineEnv makes the test binary a program that runs the
// end-of-global-window count on embedded weir (--runner=weir, no
// endpoint), as a user's program does, with the checkpoint flags its
// value gives (space-separated name=value), and exits 0 if the job
// succeeded (passert checks its counts).
const childPipelineEnv = "WEIR_TEST_CHILD_PIPELINE"

func childPipeline() int {
	for _, kv := range strings.Fields(os.Getenv(childPipelineEnv)) {
		name, value, _ := strings.Cut(kv, "=")
		if err := flag.Set(name, value); err != nil {
			fmt.Fprintf(os.Stderr, "flag %s: %v\n", kv, err)
			return 2
		}
	}
	beam.Init()
	*jobopts.Endpoint = ""
	sp := GlobalSpec{Events: 300_000, Keys: 100_000, Splits: 1}
	if _, err := beam.Run(context.Background(), "weir", endOfGlobalPipeline(sp)); err != nil {
		fmt.Fprintf(os.Stderr, "job failed: %v\n", err)
		return 1
	}
	return 0
}

// startPipelineChild runs childPipeline in a new process with flags.
func startPipelineChild(t *testing.T, flags ...string) (*exec.Cmd, *logBuffer) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childPipelineEnv+"="+strings.Join(flags, " "), "WEIR_LOG_LEVEL=info", "TMPDIR="+t.TempDir())
	logs := &logBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, logs
}

// TestKill9ResumeEmbedded: a program running a job on embedded weir with a
// checkpoint every 200 ms is killed with SIGKILL once a checkpoint has
// completed; the same program started again with --resume restores it and
// produces the exact counts. (The restore once failed every time: stage
// IDs were not the same in two runs of one program, so the checkpoint
// "had no state" for a subtask of the new run.)
func TestKill9ResumeEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("starts pipeline processes")
	}
	if os.Getenv(inProcessEnv) == "1" {
		t.Skip("the child program runs embedded, in process, either way: once is enough")
	}
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), "file://"+dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const job = "kc"
	flags := []string{"checkpoint_dir=file://" + dir, "checkpointing_interval=200ms", "job_name=" + job, "parallelism=2"}

	first, logs := startPipelineChild(t, flags...)
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	waitForCheckpoint(t, st, job, done)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatalf("the job finished before the kill: make it longer\n%s", logs)
	}
	metas, _, err := checkpoint.List(context.Background(), st, job)
	if err != nil || len(metas) == 0 {
		t.Fatalf("no completed checkpoint after the kill: %v", err)
	}
	t.Logf("killed with checkpoint %d the latest", metas[0].CheckpointID)

	second, logs := startPipelineChild(t, append(flags, "resume=true")...)
	werr := make(chan error, 1)
	go func() { werr <- second.Wait() }()
	select {
	case err := <-werr:
		if err != nil {
			t.Fatalf("the resumed program failed: %v\n%s", err, testlog.Tail(logs.String(), 40))
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("the resumed program did not end\n%s", testlog.Tail(logs.String(), 40))
	}
	if !strings.Contains(logs.String(), "resuming from checkpoint") {
		t.Errorf("the second run did not resume from a checkpoint:\n%s", testlog.Tail(logs.String(), 40))
	}
}
