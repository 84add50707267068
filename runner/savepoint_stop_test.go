package runner_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/savepoint"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// liveRun is a checkpointed job on a server with a savepoint dir, started
// in the background, with a connection to the server.
type liveRun struct {
	srv           *runner.Server
	chkURL, spURL string
	opts          []storage.Option
	jobID         atomic.Value
	first         chan struct{} // a checkpoint completed
	done          chan error    // the job's end
	conn          *grpc.ClientConn
}

// startLiveRun starts p on parallelism par, its checkpoints and savepoints
// on storage kind ("file", or "gs": a fake GCS), and waits for its first
// checkpoint.
func startLiveRun(t *testing.T, kind string, p *beam.Pipeline, par int) *liveRun {
	t.Helper()
	chkURL, opts := openCrashStorage(t, kind)
	r := &liveRun{chkURL: chkURL, spURL: "file://" + t.TempDir(), opts: opts, first: make(chan struct{}, 1), done: make(chan error, 1)}
	if kind == "gs" {
		r.spURL = "gs://weir-crash/savepoints"
	}
	r.srv = startWeirWith(t, runner.Config{
		Parallelism:    par,
		Limits:         engine.Limits{SavepointFileKeyGroups: 3, ImportRunBytes: 1024},
		Checkpoints:    runner.CheckpointConfig{Dir: chkURL, Interval: 100 * time.Millisecond, Retained: 1, SavepointDir: r.spURL},
		StorageOptions: opts,
		OnCheckpoint: func(id string, s engine.CheckpointStats) {
			if s.Failed == "" {
				r.jobID.Store(id)
				select {
				case r.first <- struct{}{}:
				default:
				}
			}
		},
	})
	go func() { r.done <- runOn(t, r.srv, p, "loopback") }()
	select {
	case <-r.first:
	case err := <-r.done:
		t.Fatalf("the job ended before its first checkpoint: %v", err)
	}
	conn, err := grpc.NewClient(r.srv.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.conn = conn
	return r
}

// take takes a savepoint of the running job into its savepoint dir.
func (r *liveRun) take(t *testing.T) string {
	t.Helper()
	return r.takeAs(t, "")
}

// takeAs is take of a savepoint of type typ ("": canonical).
func (r *liveRun) takeAs(t *testing.T, typ string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spPath, err := portability.TakeSavepointWith(ctx, r.conn, r.jobID.Load().(string), portability.SavepointRequest{Type: typ})
	if err != nil {
		t.Fatalf("taking a savepoint: %v", err)
	}
	return spPath
}

// metadata opens the savepoint at path (in r's savepoint dir).
func (r *liveRun) metadata(t *testing.T, path string) *savepoint.Metadata {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, r.spURL, r.opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := savepoint.Open(ctx, st, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx); err != nil {
		t.Fatal(err)
	}
	return s.Metadata()
}

// TestStopWithSavepoint stops a running job with a savepoint the way
// SIGTERM does (Server.StopWithSavepoints): its sources stop at a
// position, the savepoint is taken and the job ends DONE, having committed
// nothing (its timers fire at the end of input, which it never reached).
// Started again from the savepoint at another parallelism, it commits the
// exact result of an uninterrupted run: no count lost, none repeated.
func TestStopWithSavepoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	for _, kind := range []string{"file", "gs"} {
		t.Run(kind, func(t *testing.T) { stopWithSavepoint(t, kind) })
	}
}

// stopWithSavepoint is TestStopWithSavepoint on storage kind.
func stopWithSavepoint(t *testing.T, kind string) {
	defer setFlag(&jobopts.JobName, "stop")()
	sp := crashSpec("stop-with-savepoint-" + kind)
	sp.PauseMS = 40
	r := startLiveRun(t, kind, crashPipeline(sp), 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	outs := r.srv.StopWithSavepoints(ctx)
	if len(outs) != 1 || outs[0].Err != nil {
		t.Fatalf("StopWithSavepoints: %+v, want one job stopped", outs)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("the stopped job did not end DONE: %v", err)
	}
	if st := r.srv.Jobs().Job(outs[0].Job).State(); st.String() != "DONE" {
		t.Fatalf("the stopped job's state is %v, want DONE", st)
	}
	committed.Lock()
	early := len(committed.lines[sp.Sink])
	committed.Unlock()
	if early != 0 {
		t.Fatalf("the stopped job committed %d lines: its timers fired before the end of its input", early)
	}
	m := r.metadata(t, outs[0].Path)
	residuals := 0
	for _, src := range m.Sources {
		for _, f := range src.Files {
			residuals += int(f.Records)
		}
	}
	if residuals == 0 {
		t.Fatalf("the savepoint of a job stopped mid-stream holds no source position: %+v", m.Sources)
	}

	srv3 := startWeirWith(t, runner.Config{
		Parallelism:    3,
		Checkpoints:    runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: outs[0].Path},
		StorageOptions: r.opts,
	})
	fresh := sp
	fresh.Events *= 2 // only a job that restored the generator positions commits sp's result
	if err := runOn(t, srv3, crashPipeline(fresh), "loopback"); err != nil {
		t.Fatalf("the job started from the stop's savepoint failed: %v", err)
	}
	checkCommitted(t, sp, "stopped with a savepoint, started again from it at parallelism 3")
}

// TestStopWithSavepointDrain stops a running job with --drain through
// weir's gRPC service (as `weir stop --drain` does): the sources end, the
// watermark reaches the end and every key's timer fires and commits once,
// then the savepoint of the drained job is written: no state and no source
// position left, the Impulse fired. A job started from it runs nothing
// and commits nothing more.
func TestStopWithSavepointDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	defer setFlag(&jobopts.JobName, "stopdrain")()
	sp := crashSpec("stop-with-savepoint-drain")
	sp.PauseMS = 40
	r := startLiveRun(t, "file", crashPipeline(sp), 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	path, err := portability.StopWithSavepoint(ctx, r.conn, r.jobID.Load().(string), "", true)
	if err != nil {
		t.Fatalf("stop --drain: %v", err)
	}
	if err := <-r.done; err != nil {
		t.Fatalf("the drained job failed: %v", err)
	}
	lines := func() map[string]int {
		committed.Lock()
		defer committed.Unlock()
		out := map[string]int{}
		for l, n := range committed.lines[sp.Sink] {
			out[l] = n
		}
		return out
	}
	got := lines()
	keys := map[string]bool{}
	for l, n := range got {
		k, _, _ := strings.Cut(l, "=")
		if n != 1 || keys[k] {
			t.Errorf("%s committed %d times (key %s twice: %v)", l, n, k, keys[k])
		}
		keys[k] = true
	}
	if len(keys) != int(sp.Keys) {
		t.Fatalf("the drain committed %d keys' timers, want all %d (a timer did not fire): %v", len(keys), sp.Keys, got)
	}
	m := r.metadata(t, path)
	for _, tr := range m.Transforms {
		if len(tr.Files) > 0 {
			t.Errorf("the drained job's savepoint holds state of %s: %+v", tr.UniqueName, tr.Files)
		}
	}
	for _, src := range m.Sources {
		if len(src.Files) > 0 {
			t.Errorf("the drained job's savepoint holds a position of %s", src.UniqueName)
		}
	}
	if len(m.FiredImpulses) == 0 {
		t.Error("the drained job's savepoint has no fired Impulse")
	}
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: path},
	})
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("the job started from the drained savepoint failed: %v", err)
	}
	if again := lines(); len(again) != len(got) {
		t.Fatalf("the job started from the drained savepoint committed more: %d lines, before %d", len(again), len(got))
	}
	for l, n := range lines() {
		if n != 1 {
			t.Errorf("%s committed %d times after the restart", l, n)
		}
	}
}

// TestSIGTERMStopsWithSavepoint sends SIGTERM to a weir server process
// with a savepoint dir, as an orchestrator does before it moves the
// server: the running job stops with a savepoint and ends DONE, the server
// exits, and a job started from the savepoint commits the exact result.
func TestSIGTERMStopsWithSavepoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts weir processes")
	}
	chk, spDir := t.TempDir(), t.TempDir()
	st, err := storage.Open(context.Background(), "file://"+chk)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	job := "sigterm"
	defer setFlag(&jobopts.JobName, job)()
	sp := crashSpec("sigterm-savepoint")
	sp.PauseMS = 40
	child, ep := startChild(t, []string{"WEIR_TEST_CHECKPOINT_DIR=file://" + chk, "WEIR_TEST_SAVEPOINT_DIR=file://" + spDir})
	done := make(chan error, 1)
	go func() { _, err := runOnEndpoint(t, ep, crashPipeline(sp)); done <- err }()
	waitForCheckpoint(t, st, job, done)
	if err := child.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The job ends DONE; the Go SDK then asks for its metrics, which a
	// server that has exited meanwhile no longer serves.
	if err := <-done; err != nil && !strings.Contains(err.Error(), "failed to get metrics") {
		t.Fatalf("the job of a server sent SIGTERM did not end DONE: %v", err)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("the server sent SIGTERM: %v", err)
	}
	sps, err := filepath.Glob(filepath.Join(spDir, "savepoint-sigterm-*"))
	if err != nil || len(sps) != 1 {
		t.Fatalf("savepoints after SIGTERM: %v (%v), want one", sps, err)
	}
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: "file://" + sps[0]},
	})
	fresh := sp
	fresh.Events *= 2
	if err := runOn(t, srv, crashPipeline(fresh), "loopback"); err != nil {
		t.Fatalf("the job started from the SIGTERM savepoint failed: %v", err)
	}
	checkCommitted(t, sp, "SIGTERM, then started from its savepoint")
}
