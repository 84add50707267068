package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/internal/testlog"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/savepoint"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// countName is the unique name of the crash pipeline's counting DoFn.
const countName = "CountPerKey/runner_test.keyCountFn"

// life is one run of a job: its job server's endpoint, its job's ID once
// the run has completed a checkpoint, and the run's end.
type life struct {
	endpoint string
	id       <-chan jobID
	done     <-chan error
}

// jobID is a job's ID, or why it is not known.
type jobID struct {
	id  string
	err error
}

// startLife starts run n of the crash pipeline of sp at parallelism par,
// from the savepoint at spPath ("" none); its savepoints go to the
// savepoint dir of the test.
type startLife func(n, par int, spPath string, sp CrashSpec) life

// TestSavepointRescale rescales a checkpointed job 2 → 4 → 1 through two
// savepoints: the job runs on 2 subtasks a stage, a savepoint is taken
// mid-run and the job cancelled; started from it on 4, another savepoint
// is taken mid-run and that run cancelled; started from that one on 1,
// the job runs to its end. The sink (one for the three runs) must have
// committed exactly the uninterrupted run's per-key counts and sums:
// state lost or counted twice in a move, a run that committed before it
// was cancelled, or a run that generated its input again all show. Through
// weir servers (in this process) on file:// and the fake GCS, and as a
// program running embedded weir (--runner=weir without an endpoint,
// flags for pipeline options) in a child process.
func TestSavepointRescale(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	for _, kind := range []string{"file", "gs"} {
		t.Run("served-"+kind, func(t *testing.T) {
			spURL, st, start := servedLives(t, kind)
			rescale(t, spURL, st, start, []int{2, 4, 1}, "")
		})
	}
	t.Run("embedded-file", func(t *testing.T) {
		spURL, st, start := embeddedLives(t)
		rescale(t, spURL, st, start, []int{2, 4, 1}, "")
	})
}

// rescale is TestSavepointRescale with lives started by start at the three
// parallelisms pars, savepoints of type typ ("": canonical) going to spURL
// (st); it returns the two savepoints' paths.
func rescale(t *testing.T, spURL string, st storage.Storage, start startLife, pars []int, typ string) []string {
	want := crashSpec("rescale-" + strings.ReplaceAll(t.Name(), "/", "-"))
	want.PauseMS = 40 // the generator runs for seconds: long enough for two savepoints
	// A run started from a savepoint says twice the events in its Create:
	// only one that resumes the savepoint's generator positions, and does
	// not fire its Impulse again, commits want's result.
	fresh := want
	fresh.Events *= 2
	spPath := ""
	var counted []int64
	var taken []string
	for n, par := range pars {
		sp := want
		if n > 0 {
			sp = fresh
		}
		l := start(n, par, spPath, sp)
		if n == 2 {
			if err := <-l.done; err != nil {
				t.Fatalf("run 3 (parallelism 1, from %s) failed: %v", spPath, err)
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
		spPath = savepointAndCancel(t, l.endpoint, id.id, typ)
		taken = append(taken, spPath)
		// A cancelled job ends as Beam's Go SDK says: no error.
		if err := <-l.done; err != nil {
			t.Fatalf("run %d (parallelism %d), cancelled: %v", n+1, par, err)
		}
		if !strings.HasPrefix(spPath, spURL+"/") {
			t.Fatalf("savepoint %s, want one in %s", spPath, spURL)
		}
		saved, err := savepoint.Open(context.Background(), st, path.Base(spPath))
		if err != nil {
			t.Fatal(err)
		}
		m := saved.Metadata()
		if m.Parallelism != par || m.IsNative() != (typ == "native") {
			t.Errorf("savepoint %d records parallelism %d, type %q; want %d, %q", n+1, m.Parallelism, m.Type, par, typ)
		}
		if m.IsNative() {
			if err := saved.Verify(context.Background()); err != nil || len(m.Native) == 0 {
				t.Fatalf("native savepoint %d: %d DBs, %v", n+1, len(m.Native), err)
			}
			continue // its counts are in Pebble files
		}
		counted = append(counted, savedCount(t, st, path.Base(spPath), countName))
	}
	if len(counted) == 2 {
		t.Logf("events counted in savepoint 1: %d, in savepoint 2: %d, of %d", counted[0], counted[1], want.Events)
		// Both savepoints mid-run, the second further on: each run had
		// input to hand on.
		if counted[0] <= 0 || counted[1] < counted[0] || counted[1] >= want.Events {
			t.Errorf("the savepoints hold counts of %d and %d of %d events: want 0 < first <= second < all", counted[0], counted[1], want.Events)
		}
	}
	checkCommitted(t, want, fmt.Sprintf("rescaled %v through two savepoints %s", pars, typ))
	return taken
}

// servedLives starts each life on a weir server of its own in this
// process, checkpoints and savepoints on storage kind ("file", or "gs": a
// fake GCS all lives share).
func servedLives(t *testing.T, kind string) (string, storage.Storage, startLife) {
	chkURL, opts := openCrashStorage(t, kind)
	spURL := "file://" + t.TempDir()
	if kind == "gs" {
		spURL = "gs://weir-crash/savepoints"
	}
	st, err := storage.Open(context.Background(), spURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Cleanup(setFlag(&jobopts.JobName, strings.ReplaceAll(t.Name(), "/", "-")))
	return spURL, st, func(n, par int, spPath string, sp CrashSpec) life {
		ids := make(chan jobID, 1)
		// Small files and import runs, and a few restore workers, varied
		// from life to life: a restore reads parts of files and loads
		// several runs.
		limits := engine.Limits{SavepointFileKeyGroups: 1 + n%5, ImportRunBytes: 512 << n, RestoreWorkers: 1 + n%3}
		t.Logf("life %d: %+v", n, limits)
		srv := startWeirWith(t, runner.Config{
			Parallelism: par,
			Limits:      limits,
			Checkpoints: runner.CheckpointConfig{Dir: fmt.Sprintf("%s-%d", chkURL, n), Interval: 100 * time.Millisecond, Retained: 1,
				SavepointDir: spURL, SavepointPath: spPath},
			StorageOptions: opts,
			OnCheckpoint: func(id string, s engine.CheckpointStats) {
				if s.Failed == "" {
					select {
					case ids <- jobID{id: id}:
					default:
					}
				}
			},
		})
		done := make(chan error, 1)
		go func() { done <- runOn(t, srv, crashPipeline(sp), "loopback") }()
		return life{endpoint: srv.Endpoint(), id: ids, done: done}
	}
}

// embeddedLives starts each life as a program in a child process that
// runs the job on embedded weir (childEmbedded), its checkpoint and
// savepoint options as flags, with the worker mode of this test run
// (--weir_fn_api unless WEIR_TEST_INPROCESS=1). What the child's sink
// committed is added to this process's, so that checkCommitted sees it.
func embeddedLives(t *testing.T) (string, storage.Storage, startLife) {
	dir := t.TempDir()
	spURL := "file://" + filepath.Join(dir, "savepoints")
	st, err := storage.Open(context.Background(), spURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const job = "rescale-embedded"
	return spURL, st, func(n, par int, spPath string, sp CrashSpec) life {
		chk := "file://" + filepath.Join(dir, fmt.Sprintf("chk-%d", n))
		flags := []string{"checkpoint_dir=" + chk, "checkpointing_interval=100ms", "retained_checkpoints=1", "job_name=" + job,
			fmt.Sprintf("parallelism=%d", par), "savepoint_dir=" + spURL, fmt.Sprintf("weir_fn_api=%t", os.Getenv(inProcessEnv) != "1")}
		if spPath != "" {
			flags = append(flags, "savepoint_path="+spPath)
		}
		spec, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, fmt.Sprintf("committed-%d.json", n))
		cmd, logs := startEmbeddedChild(t, string(spec), out, flags)
		done, exited := make(chan error, 1), make(chan struct{})
		go func() {
			err := cmd.Wait()
			close(exited)
			if err != nil {
				err = fmt.Errorf("%w\n%s", err, testlog.Tail(logs.String(), 20))
			} else if ran := fmt.Sprintf("stages with parallelism %d", par); !strings.Contains(logs.String(), ran) {
				err = fmt.Errorf("the job did not say it ran %s (--parallelism)", ran)
			}
			if b, rerr := os.ReadFile(out); rerr == nil {
				var got map[string]int
				if jerr := json.Unmarshal(b, &got); jerr != nil {
					err = fmt.Errorf("what run %d committed, %s: %w", n+1, out, jerr)
				}
				committed.Lock()
				if committed.lines[sp.Sink] == nil {
					committed.lines[sp.Sink] = map[string]int{}
				}
				for l, c := range got {
					committed.lines[sp.Sink][l] += c
				}
				committed.Unlock()
			} else if err == nil {
				err = fmt.Errorf("the program succeeded but wrote no %s: %w", out, rerr)
			}
			done <- err
		}()
		ep := embeddedEndpoint(t, logs, done)
		cst, err := storage.Open(context.Background(), chk)
		if err != nil {
			t.Fatal(err)
		}
		ids := make(chan jobID, 1)
		go func() {
			defer cst.Close()
			if !jobCheckpointed(cst, job, exited) {
				return // the run's end tells
			}
			id, err := onlyJobID(ep)
			ids <- jobID{id, err}
		}()
		return life{endpoint: ep, id: ids, done: done}
	}
}

// startEmbeddedChild runs childEmbedded in a new process: the crash
// pipeline of spec (JSON) with flags, writing what it committed to out.
func startEmbeddedChild(t *testing.T, spec, out string, flags []string) (*exec.Cmd, *logBuffer) {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), childServeEnv+"="+out, childEmbeddedEnv+"="+spec, childFlagsEnv+"="+strings.Join(flags, " "),
		"WEIR_LOG_LEVEL=info", "TMPDIR="+t.TempDir())
	logs := &logBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, logs
}

var embeddedServing = regexp.MustCompile(`weir: embedded job server at (\S+) `)

// embeddedEndpoint waits for the job server address an embedded job logs
// at start.
func embeddedEndpoint(t *testing.T, logs *logBuffer, done <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if m := embeddedServing.FindStringSubmatch(logs.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("the program ended before its embedded weir served: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("the program logged no job server address within a minute:\n%s", testlog.Tail(logs.String(), 20))
	return ""
}

// jobCheckpointed waits until job has a completed checkpoint in st, and
// says false if the process running it ended first (exited closed) or
// none came within a minute.
func jobCheckpointed(st storage.Storage, job string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if metas, _, err := checkpoint.List(context.Background(), st, job); err == nil && len(metas) > 0 {
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// dialJobServer connects to the job server at endpoint until the test
// ends.
func dialJobServer(t *testing.T, endpoint string) *grpc.ClientConn {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// onlyJobID is the ID of the one job the job server at endpoint has.
func onlyJobID(endpoint string) (string, error) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := jobpb.NewJobServiceClient(conn).GetJobs(ctx, &jobpb.GetJobsRequest{})
	if err != nil || len(resp.GetJobInfo()) != 1 {
		return "", fmt.Errorf("jobs of %s: %v, %v; want one", endpoint, resp.GetJobInfo(), err)
	}
	return resp.GetJobInfo()[0].GetJobId(), nil
}

// savepointAndCancel takes a savepoint of type typ ("": canonical) of job
// id on the job server at endpoint, as `weir savepoint take` does, then cancels the job through
// the Job API (which it must still be running); it returns the
// savepoint's URL.
func savepointAndCancel(t *testing.T, endpoint, id string, typ string) string {
	t.Helper()
	conn := dialJobServer(t, endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spPath, err := portability.TakeSavepointWith(ctx, conn, id, portability.SavepointRequest{Type: typ})
	if err != nil {
		t.Fatalf("taking a savepoint of job %s: %v", id, err)
	}
	resp, err := jobpb.NewJobServiceClient(conn).Cancel(ctx, &jobpb.CancelJobRequest{JobId: id})
	if err != nil {
		t.Fatalf("cancelling job %s: %v", id, err)
	}
	if s := resp.GetState(); s != jobpb.JobState_CANCELLING && s != jobpb.JobState_CANCELLED {
		t.Fatalf("cancelling job %s: it was %v, not running: make the job longer", id, s)
	}
	return spPath
}

// TestSavepointReplay: a job restored twice from the same savepoint, an
// old one (taken early in the original run, which went on to its end and
// dropped the checkpoint the savepoint was written from), commits the
// same output both times, equal to what the original committed after the
// savepoint: its source (the paced generator) is deterministic, and the
// savepoint's positions rewind it. (The counting DoFn emits at the end of
// the input, so all of the output comes after the savepoint.)
func TestSavepointReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	spURL, st, start := servedLives(t, "file")
	orig := crashSpec("replay-original")
	orig.PauseMS = 40
	l := start(0, 2, "", orig)
	var id jobID
	select {
	case id = <-l.id:
	case err := <-l.done:
		t.Fatalf("the original run ended before its first checkpoint: %v", err)
	}
	conn := dialJobServer(t, l.endpoint)
	spPath, err := portability.TakeSavepoint(t.Context(), conn, id.id, "")
	if err != nil {
		t.Fatalf("taking a savepoint: %v", err)
	}
	if err := <-l.done; err != nil {
		t.Fatalf("the original run failed: %v", err)
	}
	checkCommitted(t, orig, "the original run")
	if n := savedCount(t, st, path.Base(spPath), countName); n <= 0 || n >= orig.Events {
		t.Fatalf("the savepoint holds counts of %d of %d events: not taken mid-run", n, orig.Events)
	}
	committed.Lock()
	want := maps.Clone(committed.lines[orig.Sink])
	committed.Unlock()
	for i := range 2 {
		replay := orig
		replay.Sink = fmt.Sprintf("replay-%d", i+1)
		fresh := replay
		fresh.Events *= 2 // only a restored job commits orig's result
		if err := <-start(i+1, 2, spPath, fresh).done; err != nil {
			t.Fatalf("replay %d from %s failed: %v", i+1, spPath, err)
		}
		committed.Lock()
		got := maps.Clone(committed.lines[replay.Sink])
		committed.Unlock()
		if !maps.Equal(got, want) {
			t.Errorf("replay %d from %s committed %d lines, the original %d: not the same output", i+1, strings.TrimPrefix(spPath, spURL+"/"), len(got), len(want))
		}
		checkCommitted(t, replay, fmt.Sprintf("replay %d from an old savepoint", i+1))
	}
}
