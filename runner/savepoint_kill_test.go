package runner_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
)

// TestSavepointKill9: a weir server killed with SIGKILL while it writes a
// savepoint (its data files written, its _metadata not: the engine's
// FaultSavepointWrite point, where the child blocks) leaves no savepoint:
// the directory is listed as incomplete (inspect.List, and `weir
// savepoint list` when WEIR_BIN names a built weir), and savepoint.Open
// refuses it, naming the missing _metadata. The savepoint taken before
// it still verifies and restores the job's exact result, and the job's
// checkpoints are intact: resumed from them by a new server, the job
// commits its exact result.
func TestSavepointKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	dir := t.TempDir()
	chkURL, spURL := "file://"+filepath.Join(dir, "chk"), "file://"+filepath.Join(dir, "sp")
	ctx := context.Background()
	chkSt, err := storage.Open(ctx, chkURL)
	if err != nil {
		t.Fatal(err)
	}
	defer chkSt.Close()
	spSt, err := storage.Open(ctx, spURL)
	if err != nil {
		t.Fatal(err)
	}
	defer spSt.Close()
	env := []string{"WEIR_TEST_CHECKPOINT_DIR=" + chkURL, "WEIR_TEST_SAVEPOINT_DIR=" + spURL}
	const job = "savepoint-kill9"
	defer setFlag(&jobopts.JobName, job)()
	sp := crashSpec("savepoint-kill9")
	sp.PauseMS = 40 // still running when the second savepoint blocks

	blocked := filepath.Join(dir, "blocked")
	first, ep := startChild(t, append(env, childBlockSavepointEnv+"=2,"+blocked))
	done := make(chan error, 1)
	go func() { _, err := runOnEndpoint(t, ep, crashPipeline(sp)); done <- err }()
	waitForCheckpoint(t, chkSt, job, done)
	id, err := onlyJobID(ep)
	if err != nil {
		t.Fatal(err)
	}
	conn := dialJobServer(t, ep)
	tctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	earlier, err := portability.TakeSavepoint(tctx, conn, id, "")
	if err != nil {
		t.Fatalf("the first savepoint: %v", err)
	}
	second := make(chan error, 1)
	go func() { _, err := portability.TakeSavepoint(tctx, conn, id, ""); second <- err }()
	waitForFile(t, blocked, second)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	if err := <-second; err == nil {
		t.Fatal("the savepoint being written when its server was killed completed")
	}
	<-done // the job's server is gone

	// No savepoint: a directory without _metadata, apart from the earlier
	// savepoint.
	l, err := inspect.List(ctx, spSt)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Savepoints) != 1 || l.Savepoints[0].URL != earlier || len(l.Unreadable) > 0 {
		t.Fatalf("savepoints listed %+v (unreadable %v), want only the earlier %s", l.Savepoints, l.Unreadable, earlier)
	}
	if len(l.Incomplete) != 1 || l.Incomplete[0].Files == 0 {
		t.Fatalf("incomplete savepoints listed %+v, want the one being written, with its data files", l.Incomplete)
	}
	partial := path.Base(l.Incomplete[0].URL)
	if _, err := savepoint.Open(ctx, spSt, partial); err == nil || !strings.Contains(err.Error(), partial+"/"+savepoint.MetadataBase) {
		t.Errorf("opening the savepoint cut short: err = %v, want a refusal naming %s/%s", err, partial, savepoint.MetadataBase)
	}
	if bin := os.Getenv("WEIR_BIN"); bin != "" {
		out, err := exec.Command(bin, "savepoint", "list", spURL).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "incomplete") || !strings.Contains(string(out), l.Incomplete[0].URL) || !strings.Contains(string(out), earlier) {
			t.Errorf("weir savepoint list %s (%v):\n%s\nwant %s listed and %s as incomplete", spURL, err, out, earlier, l.Incomplete[0].URL)
		}
	}
	s, err := savepoint.Open(ctx, spSt, path.Base(earlier))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatalf("the earlier savepoint: %v", err)
	}

	// The job's checkpoints: a new server resumes the job from them.
	if metas, _, err := checkpoint.List(ctx, chkSt, job); err != nil || len(metas) == 0 {
		t.Fatalf("no completed checkpoint after the kill: %v", err)
	}
	_, ep = startChild(t, append(env, "WEIR_TEST_RESUME=1"))
	if _, err := runOnEndpoint(t, ep, crashPipeline(sp)); err != nil {
		t.Fatalf("the job resumed from its checkpoints failed: %v", err)
	}
	checkCommitted(t, sp, "resumed from its checkpoints after a kill -9 during a savepoint")

	// The earlier savepoint restores.
	srv := startWeirWith(t, runner.Config{
		Parallelism: 3,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: earlier},
	})
	restored := sp
	restored.Sink = "savepoint-kill9-earlier"
	fresh := restored
	fresh.Events *= 2 // only a restored job commits restored's result
	if err := runOn(t, srv, crashPipeline(fresh), "loopback"); err != nil {
		t.Fatalf("the job started from the earlier savepoint failed: %v", err)
	}
	checkCommitted(t, restored, "started from the savepoint taken before the kill")
}

// waitForFile waits until file exists; it fails the test if errc says
// first that what was to create it ended.
func waitForFile(t *testing.T, file string, errc <-chan error) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(file); err == nil {
			return
		}
		select {
		case err := <-errc:
			t.Fatalf("ended before it created %s: %v", file, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("%s not created within a minute", file)
}

// TestSavepointRefusedAtStart: a job started from a damaged savepoint (a
// byte flipped in a data file) or a foreign one (a savepoint's _metadata
// in another savepoint's directory) fails before it runs (no checkpoint,
// nothing committed), its error naming the file. Copies of the golden
// savepoint; the format-level checks are the savepoint package's
// (TestDamagedFiles, TestRelocate). That a savepoint moved to another
// directory restores is TestGoldenSavepointRestores: it restores one
// written elsewhere and copied into testdata.
func TestSavepointRefusedAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed jobs")
	}
	dirs, err := filepath.Glob(filepath.Join("testdata", "savepoints", "savepoint-sp-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in testdata/savepoints, found %v (%v)", dirs, err)
	}
	golden := dirs[0]
	defer setFlag(&jobopts.JobName, "refused")()
	for _, tc := range []struct {
		name string
		// damage copies the golden savepoint into root and returns its
		// directory there and the file the refusal must name.
		damage func(t *testing.T, root string) (dir, file string)
	}{
		{"corrupt", func(t *testing.T, root string) (string, string) {
			dir := filepath.Base(golden)
			copySavepoint(t, golden, filepath.Join(root, dir))
			const file = "t1-kg0-64.rec"
			name := filepath.Join(root, dir, file)
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x10
			if err := os.WriteFile(name, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return dir, dir + "/" + file
		}},
		{"foreign", func(t *testing.T, root string) (string, string) {
			// Another savepoint's directory (of job sp, c9_000000), holding
			// the golden savepoint's files, its _metadata among them.
			const dir = "savepoint-sp-c9_000000"
			copySavepoint(t, golden, filepath.Join(root, dir))
			return dir, dir + "/" + savepoint.MetadataBase
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir, file := tc.damage(t, root)
			var checkpoints atomic.Int64
			srv := startWeirWith(t, runner.Config{
				Parallelism: 2,
				Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1,
					SavepointPath: "file://" + filepath.Join(root, dir)},
				OnCheckpoint: func(string, engine.CheckpointStats) { checkpoints.Add(1) },
			})
			sp := crashSpec("savepoint-refused-" + tc.name)
			err := runOn(t, srv, crashPipeline(sp), "loopback")
			if err == nil || !strings.Contains(err.Error(), file) {
				t.Fatalf("a job from a %s savepoint: err = %v, want a refusal naming %s", tc.name, err, file)
			}
			committed.Lock()
			n := len(committed.lines[sp.Sink])
			committed.Unlock()
			if n > 0 || checkpoints.Load() > 0 {
				t.Errorf("the job refused ran: it committed %d lines and took %d checkpoints", n, checkpoints.Load())
			}
			t.Logf("refused: %v", err)
		})
	}
}

// copySavepoint copies savepoint directory src to dst (which must not
// exist).
func copySavepoint(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestSavepointWriteFails: a savepoint whose writing fails before its
// _metadata (an error injected at FaultSavepointWrite) is refused to the
// one who asked, naming the cause, and leaves the job running: the next
// savepoint completes, the job commits its exact result, and the failed
// attempt left nothing behind (its files deleted; only a crash leaves an
// incomplete directory, TestSavepointKill9).
func TestSavepointWriteFails(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	spURL := "file://" + t.TempDir()
	var failed atomic.Bool
	ids := make(chan string, 1)
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointDir: spURL},
		CheckpointFault: func(point string, _ int64) error {
			if point == engine.FaultSavepointWrite && failed.CompareAndSwap(false, true) {
				return errors.New("injected: the savepoint's storage fails")
			}
			return nil
		},
		OnCheckpoint: func(id string, s engine.CheckpointStats) {
			if s.Failed == "" {
				select {
				case ids <- id:
				default:
				}
			}
		},
	})
	defer setFlag(&jobopts.JobName, "savepoint-fails")()
	sp := crashSpec("savepoint-write-fails")
	sp.PauseMS = 40
	done := make(chan error, 1)
	go func() { done <- runOn(t, srv, crashPipeline(sp), "loopback") }()
	var id string
	select {
	case id = <-ids:
	case err := <-done:
		t.Fatalf("the job ended before its first checkpoint: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := dialJobServer(t, srv.Endpoint())
	if _, err := portability.TakeSavepoint(ctx, conn, id, ""); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("a savepoint whose writing fails: err = %v, want the injected failure", err)
	}
	taken, err := portability.TakeSavepoint(ctx, conn, id, "")
	if err != nil {
		t.Fatalf("the savepoint after a failed one: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the job failed: %v", err)
	}
	checkCommitted(t, sp, "a savepoint failed while it ran")
	st, err := storage.Open(ctx, spURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l, err := inspect.List(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Savepoints) != 1 || l.Savepoints[0].URL != taken || len(l.Incomplete) != 0 {
		t.Errorf("listed savepoints %+v and incomplete %+v, want %s alone: the failed attempt's files deleted", l.Savepoints, l.Incomplete, taken)
	}
}
