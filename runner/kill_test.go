package runner_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/checkpoint/storage/storagetest"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// childServeEnv makes the test binary a weir server (see childServe).
const childServeEnv = "WEIR_TEST_CHILD_SERVE"

// childServe runs a weir server configured by the environment, as `weir
// serve --checkpoint_dir=... --savepoint_dir=... --resume` would, writes
// its endpoint to a file and serves until it is killed. With
// childBlockSavepointEnv ("N,FILE") its Nth savepoint stops before its
// _metadata is written and creates FILE, so that the test can kill it
// there. With childEmbeddedEnv it is a program instead (childEmbedded).
func childServe() int {
	if spec := os.Getenv(childEmbeddedEnv); spec != "" {
		return childEmbedded(spec)
	}
	ck := runner.DefaultCheckpointConfig()
	ck.Dir = os.Getenv("WEIR_TEST_CHECKPOINT_DIR")
	ck.SavepointDir = os.Getenv("WEIR_TEST_SAVEPOINT_DIR")
	ck.Interval = 100 * time.Millisecond
	ck.Resume = os.Getenv("WEIR_TEST_RESUME") != ""
	fault, err := blockSavepoint(os.Getenv(childBlockSavepointEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	s, err := runner.Start(runner.Config{
		Parallelism:     2,
		TempDir:         os.Getenv("WEIR_TEST_STATE_DIR"),
		Checkpoints:     ck,
		CheckpointFault: fault,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	file := os.Getenv(childServeEnv)
	if err := os.WriteFile(file+".tmp", []byte(s.Endpoint()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if ck.SavepointDir != "" {
		// As weir serve does: SIGTERM stops every job with a savepoint.
		s.StopOnSIGTERM(context.Background())
		s.Stop()
		return 0
	}
	select {} // until SIGKILL
}

// childBlockSavepointEnv is "N,FILE": the child server's Nth savepoint
// blocks when its data files are written and before its _metadata is,
// after it has created FILE.
const childBlockSavepointEnv = "WEIR_TEST_BLOCK_SAVEPOINT"

// blockSavepoint is the checkpoint fault hook that spec
// (childBlockSavepointEnv) asks for, nil for "".
func blockSavepoint(spec string) (func(string, int64) error, error) {
	if spec == "" {
		return nil, nil
	}
	ns, file, ok := strings.Cut(spec, ",")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || n < 1 {
		return nil, fmt.Errorf("%s=%q: want N,FILE with N at least 1", childBlockSavepointEnv, spec)
	}
	var seen atomic.Int64
	return func(point string, _ int64) error {
		if point != engine.FaultSavepointWrite || seen.Add(1) != n {
			return nil
		}
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			return fmt.Errorf("blocking savepoint %d: %w", n, err)
		}
		select {} // until SIGKILL
	}, nil
}

// childEmbeddedEnv makes the child a program that runs the crash pipeline
// of the CrashSpec (JSON) it holds on embedded weir (--runner=weir, no
// endpoint) with the flags (name=value, space-separated) in
// childFlagsEnv, as a user's program does; when the job has ended it
// writes what the sink committed (JSON, line → times) to the file
// childServeEnv names, and exits 0 if the job succeeded.
const (
	childEmbeddedEnv = "WEIR_TEST_CHILD_EMBEDDED"
	childFlagsEnv    = "WEIR_TEST_CHILD_FLAGS"
)

func childEmbedded(spec string) int {
	var sp CrashSpec
	if err := json.Unmarshal([]byte(spec), &sp); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", childEmbeddedEnv, err)
		return 2
	}
	for _, kv := range strings.Fields(os.Getenv(childFlagsEnv)) {
		name, value, _ := strings.Cut(kv, "=")
		if err := flag.Set(name, value); err != nil {
			fmt.Fprintf(os.Stderr, "flag %s: %v\n", kv, err)
			return 2
		}
	}
	beam.Init()
	*jobopts.Endpoint = ""
	_, err := beam.Run(context.Background(), "weir", crashPipeline(sp))
	committed.Lock()
	out, merr := json.Marshal(committed.lines[sp.Sink])
	committed.Unlock()
	file := os.Getenv(childServeEnv)
	if merr == nil {
		merr = os.WriteFile(file+".tmp", out, 0o644)
	}
	if merr == nil {
		merr = os.Rename(file+".tmp", file)
	}
	if merr != nil {
		fmt.Fprintf(os.Stderr, "writing what the sink committed: %v\n", merr)
		return 2
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "job failed: %v\n", err)
		return 1
	}
	return 0
}

// startChild starts a child weir server and returns it and its endpoint.
func startChild(t *testing.T, env []string) (*exec.Cmd, string) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	epFile := filepath.Join(t.TempDir(), "endpoint")
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, childServeEnv+"="+epFile, "WEIR_TEST_STATE_DIR="+t.TempDir())...)
	cmd.Stderr = &testLog{t: t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(epFile); err == nil {
			return cmd, string(b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("child weir server did not start")
	return nil, ""
}

// TestKill9Resume kills a `weir` server process with SIGKILL in the middle
// of a checkpointed job, starts another with --resume on the same
// checkpoint dir, submits the job again under the same name, and checks
// that what the job committed over both lives is exactly its result; on
// file:// and on a fake GCS server the children reach over HTTP.
func TestKill9Resume(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	seed, rng := crashRand(t, 1)
	for _, kind := range []string{"file", "gs"} {
		t.Run(kind, func(t *testing.T) {
			var env []string
			var st storage.Storage
			var dir string
			switch kind {
			case "file":
				dir = "file://" + t.TempDir()
				var err error
				if st, err = storage.Open(context.Background(), dir); err != nil {
					t.Fatal(err)
				}
			case "gs":
				host, client := storagetest.FakeGCSListener(t, "weir-kill")
				dir = "gs://weir-kill/chk"
				env = append(env, "STORAGE_EMULATOR_HOST="+host)
				var err error
				if st, err = storage.Open(context.Background(), dir, storage.WithGCSClient(client)); err != nil {
					t.Fatal(err)
				}
			}
			defer st.Close()
			env = append(env, "WEIR_TEST_CHECKPOINT_DIR="+dir)
			sink := "kill9-" + kind
			sp := crashSpec(sink)
			job := "kill9-" + kind
			defer setFlag(&jobopts.JobName, job)()
			delay := time.Duration(rng.IntN(400)) * time.Millisecond
			replay := fmt.Sprintf("-crash.seed=%d, %s, kill %s after the first checkpoint", seed, kind, delay)

			first, ep := startChild(t, env)
			done := make(chan error, 1)
			go func() { _, err := runOnEndpoint(t, ep, crashPipeline(sp)); done <- err }()
			waitForCheckpoint(t, st, job, done)
			time.Sleep(delay)
			if err := first.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = first.Wait()
			if err := <-done; err == nil {
				t.Logf("the job finished before the kill (%s)", replay)
			}
			metas, _, err := checkpoint.List(context.Background(), st, job)
			if err != nil || len(metas) == 0 {
				t.Fatalf("no completed checkpoint after the kill (%v) (replay: %s)", err, replay)
			}
			t.Logf("killed with checkpoint %d the latest", metas[0].CheckpointID)

			_, ep = startChild(t, append(env, "WEIR_TEST_RESUME=1"))
			res, err := runOnEndpoint(t, ep, crashPipeline(sp))
			if err != nil {
				t.Fatalf("resumed job failed (replay: %s): %v", replay, err)
			}
			checkCommitted(t, sp, replay)
			// Resumed from its checkpoint, the job generates only the rest:
			// its metrics start from the checkpoint's, committed counts
			// every event once, and attempted grows by what the checkpoint
			// had not committed.
			savedAtt, savedCom := savedCounter(metas[0], "generated")
			var att, com int64
			for _, c := range res.Metrics().AllMetrics().Counters() {
				if c.Name() == "generated" {
					att, com = att+c.Attempted, com+c.Committed
				}
			}
			t.Logf("checkpoint %d: generated attempted %d, committed %d; the job ended with attempted %d, committed %d, of %d events", metas[0].CheckpointID, savedAtt, savedCom, att, com, sp.Events)
			if savedCom <= 0 || savedCom >= sp.Events {
				t.Errorf("checkpoint %d committed %d of %d generated events: it is not in the middle of the job (replay: %s)", metas[0].CheckpointID, savedCom, sp.Events, replay)
			}
			if com != sp.Events {
				t.Errorf("generated: committed %d, want exactly %d (replay: %s)", com, sp.Events, replay)
			}
			if gen := att - savedAtt; gen != sp.Events-savedCom {
				t.Errorf("the resumed job generated %d events, want the %d its checkpoint had not: it did not resume from its checkpoint (replay: %s)", gen, sp.Events-savedCom, replay)
			}
			if savedAtt == savedCom {
				t.Logf("the checkpoint's attempted and committed counts are equal: its metrics cannot tell a resumed job from a fresh one")
			}
		})
	}
}

// waitForCheckpoint waits until job has a completed checkpoint.
func waitForCheckpoint(t *testing.T, st storage.Storage, job string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("job ended before its first checkpoint: %v", err)
		default:
		}
		if metas, _, err := checkpoint.List(context.Background(), st, job); err == nil && len(metas) > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no checkpoint completed within a minute")
}

// runOnEndpoint runs p on the weir at endpoint, LOOPBACK.
func runOnEndpoint(t *testing.T, endpoint string, p *beam.Pipeline) (beam.PipelineResult, error) {
	defer setFlag(&jobopts.Endpoint, endpoint)()
	defer setFlag(&jobopts.EnvironmentType, "loopback")()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := beam.Run(ctx, "weir", p)
	if ctx.Err() != nil {
		t.Errorf("job did not end within its deadline (err %v)", err)
	}
	return res, err
}
