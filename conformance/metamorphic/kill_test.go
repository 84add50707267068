package metamorphic

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weir-runner/weir/internal/testlog"
	"github.com/weir-runner/weir/runner"
)

// The kill fault (Settings.Kill): the job runs on embedded weir in a child
// process (this test binary, TestKillChild), which the test kills with
// SIGKILL once a checkpoint has completed; a second child runs the same
// program with --resume (CheckpointConfig.Resume) and the sinks are
// checked as for any run. The children regenerate the pipeline from its
// seed, so only generated pipelines are killed (a shrunk variant runs
// without the kill).

// childEnv carries a child's childArgs, as JSON.
const childEnv = "WEIR_METAMORPHIC_CHILD"

type childArgs struct {
	Seed        uint64
	Big         bool
	Set         Settings
	Dir, Job    string
	Resume      bool
	Incarnation int64
}

// TestKillChild is the child process of a kill run; it skips elsewhere.
func TestKillChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("the child process of a kill -9 run; runs only there")
	}
	var a childArgs
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatalf("%s: %v", childEnv, err)
	}
	spec, _ := Generate(a.Seed, Options{Big: a.Big})
	// Sink attempt IDs and manifest names must not repeat the killed
	// process's: its committed bundles' files are still listed.
	incarnation(a.Dir).Store(a.Incarnation)
	attempts.Store(a.Incarnation << 32)
	p, _, err := Build(spec, a.Dir, a.Set.FailOp, a.Set.FailAt, fmt.Sprintf("%s-%d", a.Job, a.Incarnation))
	if err != nil {
		t.Fatalf("building the pipeline: %v", err)
	}
	var restarts atomic.Int64
	cfg, _ := weirConfig(a.Set, a.Dir, os.Stderr, &restarts)
	// The parent looks for "resuming from checkpoint".
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.TempDir = filepath.Join(a.Dir, fmt.Sprintf("weir-%d", a.Incarnation))
	cfg.Checkpoints.Resume = a.Resume
	if err := os.MkdirAll(cfg.TempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := runner.Start(cfg)
	if err != nil {
		t.Fatalf("runner.Start: %v", err)
	}
	defer srv.Stop()
	if err, _ := runJob(srv, p, a.Job, *flagTimeout); err != nil {
		t.Fatalf("job failed: %v", err)
	}
}

// killDelay is how long after the first completed checkpoint the child is
// killed: up to 300 ms, from the seed.
func killDelay(seed uint64) time.Duration {
	return time.Duration(rand.New(rand.NewPCG(seed, 0x64656c61)).IntN(300)) * time.Millisecond
}

// runKilled runs spec as the kill fault says and checks the result.
func runKilled(t *testing.T, spec *Spec, set Settings, dir, job string, want map[string]map[string]int, o *outcome) *outcome {
	t.Helper()
	timeout := jobTimeout(spec, set) + 30*time.Second
	start := func(resume bool, inc int64) (*exec.Cmd, *testlog.Buffer, <-chan error) {
		a, err := json.Marshal(childArgs{Seed: spec.Seed, Big: *flagBig, Set: set, Dir: dir, Job: job, Resume: resume, Incarnation: inc})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v", fmt.Sprintf("-big=%v", *flagBig), fmt.Sprintf("-job_timeout=%v", jobTimeout(spec, set)))
		cmd.Env = append(os.Environ(), childEnv+"="+string(a))
		out := &testlog.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting the child: %v", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }() // owned by runKilled, which waits for it
		return cmd, out, done
	}
	first, log1, done := start(false, 0)
	metas := filepath.Join(dir, "chk", job, "chk-*", "_metadata")
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	killed, finished := false, false
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				o.childFailed(spec, "the first process", err, log1.String())
				return o
			}
			o.problem("kill", "the job ended before a checkpoint completed: the kill did not fire")
			break wait
		case <-deadline:
			first.Process.Kill()
			<-done
			o.jobErr, o.hung = fmt.Errorf("the first process did not end or checkpoint within %v\n%s", timeout, testlog.Tail(log1.String(), 30)), true
			return o
		case <-tick.C:
			if m, _ := filepath.Glob(metas); len(m) > 0 {
				time.Sleep(killDelay(spec.Seed))
				first.Process.Signal(syscall.SIGKILL)
				if err := <-done; err == nil {
					o.notes = append(o.notes, "the first process ended before the kill")
					finished = true
				}
				killed = true
				break wait
			}
		}
	}
	if killed {
		second, log2, done := start(true, 1)
		select {
		case err := <-done:
			if err != nil {
				o.childFailed(spec, "the resumed process", err, log2.String())
				return o
			}
		case <-time.After(timeout):
			second.Process.Kill()
			<-done
			o.jobErr, o.hung = fmt.Errorf("the resumed process did not end within %v\n%s", timeout, testlog.Tail(log2.String(), 30)), true
		}
		if o.jobErr != nil {
			return o
		}
		nothing := strings.Contains(log2.String(), "nothing to resume")
		switch {
		case finished && !nothing:
			o.problem("kill", "the first process finished the job, but the second did not say there was nothing to resume")
		case !finished && nothing:
			// Killed after the job had ended and recorded it (the record
			// comes before the last finalizations), before the process
			// exited: nothing to resume is right.
			o.notes = append(o.notes, "killed after the job recorded its end")
		case !finished && !strings.Contains(log2.String(), "resuming from checkpoint"):
			o.problem("kill", "the second process did not resume from a checkpoint")
		}
		o.restarts = 1
		o.notes = append(o.notes, "killed with SIGKILL after a checkpoint and resumed")
	}
	o.check(t, spec, set, dir, want)
	return o
}

// childFailed records a child process that failed: a job error, or a
// note if it failed with the injected split error, as a pipeline whose
// source refuses splits may.
func (o *outcome) childFailed(spec *Spec, which string, err error, log string) {
	if spec.splitErr() && strings.Contains(log, SplitErrMsg) {
		o.notes = append(o.notes, which+" failed with the injected split error, as it may")
		return
	}
	o.jobErr = fmt.Errorf("%s failed: %v\n%s", which, err, testlog.Tail(log, 30))
}

// generated reports whether spec is the pipeline its seed generates (a
// child process can build it again).
func generated(spec *Spec) bool {
	g, _ := Generate(spec.Seed, Options{Big: *flagBig})
	return g.Describe() == spec.Describe()
}
