package runner_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/internal/testlog"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// keyMod3 keys x by x mod 3.
func keyMod3(x int, emit func(string, int)) { emit(strconv.Itoa(x%3), x) }

func init() { register.Function2x0(keyMod3) }

// refusingStorage fails every write while refuse is set.
type refusingStorage struct {
	storage.Storage
	refuse atomic.Bool
}

var errRefused = errors.New("storage refuses writes (test)")

func (s *refusingStorage) Put(ctx context.Context, name string, r io.Reader) error {
	if s.refuse.Load() {
		return errRefused
	}
	return s.Storage.Put(ctx, name, r)
}

func (s *refusingStorage) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if s.refuse.Load() {
		return errRefused
	}
	return s.Storage.PutIfAbsent(ctx, name, data)
}

// TestCheckpointStorageRefusesWrites: once the storage refuses writes,
// checkpoints abort but the job goes on to its exact result, and the
// checkpoint completed before stays whole and restorable.
func TestCheckpointStorageRefusesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	rs := &refusingStorage{Storage: st}
	var done, failed atomic.Int64
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + dir, Interval: 100 * time.Millisecond, Retained: 1},
		OpenStorage: func(context.Context, string) (storage.Storage, error) { return rs, nil },
		MetricsAddr: "127.0.0.1:0",
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			if s.Failed != "" {
				failed.Add(1)
				return
			}
			done.Add(1)
			rs.refuse.Store(true) // after the first completed checkpoint
		},
	})
	sp := crashSpec("refusing")
	defer setFlag(&jobopts.JobName, "refusing")()
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	checkCommitted(t, sp, "storage refusing writes")
	if done.Load() != 1 || failed.Load() == 0 {
		t.Fatalf("%d checkpoints completed and %d aborted; want 1 and some", done.Load(), failed.Load())
	}
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`weir_checkpoints_completed_total{job="refusing-1"} 1`, `weir_checkpoints_failed_total{job="refusing-1"}`, `weir_checkpoint_last_size_bytes{job="refusing-1"}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	meta, skipped, err := checkpoint.Latest(context.Background(), st, "refusing")
	if err != nil || skipped != nil {
		t.Fatalf("the completed checkpoint is not usable: %v (skipped %v)", err, skipped)
	}
	for _, s := range meta.Subtasks {
		if len(s.Files) == 0 {
			continue
		}
		if err := checkpoint.Restore(context.Background(), st, meta, s.SubtaskID, filepath.Join(t.TempDir(), "r")); err != nil {
			t.Errorf("restoring subtask %s of the completed checkpoint: %v", s.SubtaskID, err)
		}
	}
}

// logBuffer collects a server's log lines.
type logBuffer = testlog.Buffer

// startResumingWeir starts a server with checkpoints in dir and --resume,
// logging into logs; fault, if set, is its checkpoint fault hook.
func startResumingWeir(t *testing.T, dir string, logs io.Writer, fault func(point string, chk int64) error) *runner.Server {
	t.Helper()
	srv, err := runner.Start(runner.Config{
		Parallelism:     2,
		TempDir:         t.TempDir(),
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Checkpoints:     runner.CheckpointConfig{Dir: "file://" + dir, Interval: 100 * time.Millisecond, Retained: 2, Resume: true},
		CheckpointFault: fault,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// TestResumeBadCheckpoints: resuming passes over a truncated _metadata
// (naming it) to the previous checkpoint and still reaches the exact
// result; resuming a job name with another pipeline is refused, naming the
// subtask that does not fit. The first job crashes (an injected bundle
// failure, no restarts) once its third checkpoint has completed, long
// before its input ends: its output, all at the end of the global window,
// is then the resumed job's alone. (Had it run to its end, the checkpoint
// resumed from could hold its output already, committed by it.)
func TestResumeBadCheckpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	dir := t.TempDir()
	defer setFlag(&jobopts.JobName, "resume-bad")()
	var logs logBuffer
	var crash atomic.Bool
	crash.Store(true)
	crashed := errors.New("injected crash")
	srv := startResumingWeir(t, dir, &logs, func(point string, chk int64) error {
		if point == engine.FaultSnapshot && chk >= 4 && crash.CompareAndSwap(true, false) {
			return crashed
		}
		return nil
	})
	if err := runOn(t, srv, crashPipeline(crashSpec("resume-bad-1")), "loopback"); err == nil || !strings.Contains(err.Error(), crashed.Error()) {
		t.Fatalf("first job: err = %v, want the injected crash", err)
	}
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	metas, _, err := checkpoint.List(context.Background(), st, "resume-bad")
	if err != nil || len(metas) < 2 {
		t.Fatalf("want 2 retained checkpoints, got %d (%v)", len(metas), err)
	}
	newest := checkpoint.MetadataName("resume-bad", metas[0].CheckpointID)
	p := filepath.Join(dir, filepath.FromSlash(newest))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}

	// Another pipeline is refused before it runs, and leaves the job as it
	// was for the right one.
	err = runOn(t, srv, sumsPipeline(keyMod3), "loopback")
	if err == nil || !strings.Contains(err.Error(), "another pipeline") {
		t.Fatalf("resuming with another pipeline: err = %v, want a refusal naming the subtask", err)
	}

	sp := crashSpec("resume-bad-2")
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("resumed job failed: %v", err)
	}
	checkCommitted(t, sp, "resumed past a truncated _metadata")
	if l := logs.String(); !strings.Contains(l, newest) || !strings.Contains(l, "resuming from checkpoint") {
		t.Errorf("the log does not name the truncated %s, or does not resume:\n%s", newest, l)
	}
}

// TestResumeFinishedJob: --resume of a job whose run finished runs nothing
// (replaying its tail from its last checkpoint would commit that tail
// twice) and says so; a new run of the job name that dies before its first
// checkpoint resumes from the start, not from the earlier run's last
// checkpoint; and a run record that is not one is refused, naming it.
func TestResumeFinishedJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	dir := t.TempDir()
	defer setFlag(&jobopts.JobName, "finished")()
	var logs logBuffer
	srv := startResumingWeir(t, dir, &logs, nil)
	sp := crashSpec("finished-1")
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("first run: %v", err)
	}
	checkCommitted(t, sp, "the first run")
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	run, err := checkpoint.ReadRun(ctx, st, "finished")
	if err != nil || run == nil || run.Finished == nil || run.Last == 0 {
		t.Fatalf("after the first run the run record is %+v (%v); want finished, with its last checkpoint", run, err)
	}

	// The same sink again: a run that did anything would commit twice.
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("resuming the finished job: %v", err)
	}
	checkCommitted(t, sp, "resumed after it finished")
	if !strings.Contains(logs.String(), "nothing to resume") {
		t.Errorf("resuming a finished job does not say there is nothing to resume:\n%s", logs.String())
	}

	// A new run that took no checkpoint before it died: its record says
	// its checkpoints start above the first run's.
	next, err := checkpoint.NextID(ctx, st, "finished")
	if err != nil {
		t.Fatal(err)
	}
	if err := checkpoint.WriteRun(ctx, st, "finished", checkpoint.Run{First: next, Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	from := len(logs.String())
	sp2 := crashSpec("finished-2")
	if err := runOn(t, srv, crashPipeline(sp2), "loopback"); err != nil {
		t.Fatalf("resuming a run without checkpoints: %v", err)
	}
	checkCommitted(t, sp2, "resumed a run that had no checkpoint")
	if l := logs.String()[from:]; !strings.Contains(l, "the latest is of an earlier run") || strings.Contains(l, "resuming from checkpoint") {
		t.Errorf("a run without checkpoints resumed from an earlier run's, or did not say why not:\n%s", l)
	}

	if err := os.WriteFile(filepath.Join(dir, "finished", "_run"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = runOn(t, srv, crashPipeline(crashSpec("finished-3")), "loopback")
	if err == nil || !strings.Contains(err.Error(), "finished/_run") {
		t.Fatalf("a corrupt run record: err = %v, want a refusal naming it", err)
	}
}

// TestRestartPassesOverDamagedCheckpoint: a file of the latest checkpoint
// damaged in place (same size, so only its checksum tells) fails the
// restore from it; the next attempt passes over that checkpoint, naming
// it, to the one before, and the job reaches its exact result.
func TestRestartPassesOverDamagedCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	dir := t.TempDir()
	const job = "damaged-latest"
	defer setFlag(&jobopts.JobName, job)()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var damaged atomic.Value // the object name
	var logs logBuffer
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		Logger:      slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Checkpoints: runner.CheckpointConfig{Dir: "file://" + dir, Interval: 50 * time.Millisecond, Retained: 2, RestartAttempts: 3, RestartBackoff: 10 * time.Millisecond},
		CheckpointFault: func(point string, chk int64) error {
			if point != engine.FaultAfterCommit || chk < 2 || damaged.Load() != nil {
				return nil
			}
			name, err := damageNewestFile(st, dir, job, chk)
			if err != nil {
				t.Errorf("damaging checkpoint %d: %v", chk, err)
				return nil
			}
			damaged.Store(name)
			return errors.New("fault after damaging the checkpoint (test)")
		},
	})
	sp := crashSpec("damaged-latest")
	if err := runOn(t, srv, crashPipeline(sp), "loopback"); err != nil {
		t.Fatalf("job failed: %v\n%s", err, testlog.Tail(logs.String(), 20))
	}
	name, _ := damaged.Load().(string)
	if name == "" {
		t.Fatal("no checkpoint was damaged: the job is too short")
	}
	checkCommitted(t, sp, "restored past a damaged checkpoint")
	if l := logs.String(); !strings.Contains(l, "passing over unusable checkpoints") || !strings.Contains(l, name) {
		t.Errorf("the log does not pass over the checkpoint naming %s:\n%s", name, testlog.Tail(l, 30))
	}
}

// damageNewestFile flips the last byte of a file that checkpoint chk of
// job (in file storage st at dir) references and the one before it does
// not, and returns its name.
func damageNewestFile(st storage.Storage, dir, job string, chk int64) (string, error) {
	ctx := context.Background()
	m, err := checkpoint.ReadMetadata(ctx, st, job, chk)
	if err != nil {
		return "", err
	}
	prev, err := checkpoint.ReadMetadata(ctx, st, job, chk-1)
	if err != nil {
		return "", err
	}
	old := map[string]bool{}
	for _, s := range prev.Subtasks {
		for _, f := range s.Files {
			old[f.Remote] = true
		}
	}
	for _, s := range m.Subtasks {
		for _, f := range s.Files {
			if old[f.Remote] || f.Size == 0 {
				continue
			}
			name := m.JobID + "/" + f.Remote
			p := filepath.Join(dir, filepath.FromSlash(name))
			data, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			data[len(data)-1] ^= 0xFF
			return name, os.WriteFile(p, data, 0o644)
		}
	}
	return "", fmt.Errorf("checkpoint %d has no file of its own", chk)
}
