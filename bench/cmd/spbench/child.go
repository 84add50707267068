package main

import (
	"context"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weir-runner/weir/bench/internal/statepipe"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/savepoint/inspect"
)

// A child runs one job of the benchmark pipeline in its own process, on a
// weir server it starts itself as the embedded runner does (bundles in
// this process, so statepipe.Seen is the job's progress), and reports:
//
//   - run: the job fills its state to every key (1.5 × --keys events:
//     each generator subtask runs its restriction in order, and the two
//     restrictions start half the keys apart, see spec), then --pairs pairs
//     of windows, one with checkpoints only and one with savepoints taken
//     back to back, in alternating order; the last savepoint ends the last
//     window or follows it, and the job is cancelled, leaving the
//     checkpoint that savepoint was written from as the latest.
//   - restore: the job starts (from a checkpoint with --resume, or from
//     --savepoint_path) and is cancelled once its counting DoFn has
//     processed its first event: ReadySecs is the recovery time.

// childReport is what a child prints on its last stdout line, after
// reportTag.
type childReport struct {
	Mode string
	// run
	Windows     []window
	Final       spStat
	Checkpoints []ckStat // every checkpoint the job completed, savepoints' included
	// restore: from beam.Run to the first event the counting DoFn processed.
	ReadySecs float64
}

// spStat is one savepoint: request → complete over the savepoint service.
type spStat struct {
	Path string
	Secs float64
	// Seen is how many events the job had counted when it was requested.
	Seen int64
	// Filled after the measurements, from the directory and its metadata.
	Bytes      int64 // on disk
	Records    int64 // of the counting DoFn: a value and a timer per key
	Checkpoint int64 // the checkpoint it was written from (0: unknown)
}

// window is one measured interval of the running job.
type window struct {
	Savepoints bool // savepoints back to back; false: checkpoints only
	Secs       float64
	Events     int64
	Taken      []spStat // the savepoints of the window
}

func (w window) rate() float64 { return float64(w.Events) / w.Secs }

// ckStat is one completed checkpoint.
type ckStat struct {
	ID       int64
	Started  time.Time
	Secs     float64
	Bytes    int64 // full size
	Uploaded int64
}

// job is the benchmark's job running in this process.
type job struct {
	srv   *runner.Server
	conn  *grpc.ClientConn
	id    string
	start time.Time // when beam.Run was called (set under mu)
	// ended is closed when beam.Run has returned runErr.
	ended  chan struct{}
	runErr error

	mu  sync.Mutex
	cks []ckStat
}

func runChild(ctx context.Context, mode string) (*childReport, error) {
	if mode != "run" && mode != "restore" {
		return nil, fmt.Errorf("unknown child mode %q (run, restore)", mode)
	}
	j := &job{ended: make(chan struct{})}
	var fnAPI bool
	if f := flag.Lookup("weir_fn_api"); f != nil {
		fnAPI = f.Value.String() == "true"
	}
	srv, err := runner.Start(runner.Config{
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		InProcess: !fnAPI,
		Limits:    engine.Limits{InboxSize: *inbox},
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			if s.Failed != "" {
				return
			}
			j.mu.Lock()
			defer j.mu.Unlock()
			fmt.Fprintf(os.Stderr, "+%.1f s: checkpoint %d completed, started at +%.1f s\n", time.Since(j.start).Seconds(), s.ID, s.Started.Sub(j.start).Seconds())
			j.cks = append(j.cks, ckStat{ID: s.ID, Started: s.Started, Secs: s.Duration.Seconds(), Bytes: s.FullSize, Uploaded: s.Uploaded})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting weir: %w", err)
	}
	defer srv.Stop()
	j.srv = srv
	// What runner.Execute does for --runner=weir without --endpoint, with
	// the server in our hands.
	for name, v := range map[string]string{"endpoint": srv.Endpoint(), "environment_type": "loopback"} {
		if err := flag.Set(name, v); err != nil {
			return nil, fmt.Errorf("--%s: %w", name, err)
		}
	}
	if j.conn, err = grpc.NewClient(srv.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	defer j.conn.Close()

	p, s := beam.NewPipelineWithRoot()
	statepipe.Build(s, spec())
	j.mu.Lock() // OnCheckpoint reads it
	j.start = time.Now()
	j.mu.Unlock()
	go func() {
		_, j.runErr = beam.Run(ctx, "weir", p)
		close(j.ended)
	}()
	if err := j.waitRunning(ctx); err != nil {
		return nil, err
	}
	rep := &childReport{Mode: mode}
	switch mode {
	case "run":
		stop := j.timeline()
		err = j.measure(ctx, rep)
		stop()
	case "restore":
		err = j.waitSeen(ctx, 1)
		rep.ReadySecs = time.Since(j.start).Seconds()
	}
	if cerr := j.cancel(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	j.mu.Lock()
	rep.Checkpoints = slices.Clone(j.cks)
	j.mu.Unlock()
	if mode == "run" {
		sps := rep.savepoints()
		for _, sp := range sps {
			if err := sp.stat(ctx); err != nil {
				return nil, err
			}
		}
		rep.Final = *sps[len(sps)-1]
	}
	return rep, nil
}

// savepoints are every savepoint of a run report.
func (r *childReport) savepoints() []*spStat {
	var out []*spStat
	for i := range r.Windows {
		for k := range r.Windows[i].Taken {
			out = append(out, &r.Windows[i].Taken[k])
		}
	}
	if r.Final.Path != "" {
		out = append(out, &r.Final)
	}
	return out
}

// waitRunning waits until the server runs the job and notes its ID.
func (j *job) waitRunning(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		if jobs := j.srv.Jobs().Jobs(); len(jobs) > 0 {
			switch st := jobs[0].State(); st {
			case jobpb.JobState_RUNNING:
				j.id = jobs[0].ID
				return nil
			case jobpb.JobState_DONE, jobpb.JobState_FAILED, jobpb.JobState_CANCELLED:
				<-j.ended
				return fmt.Errorf("the job ended (%s) before it ran: %v", st, j.runErr)
			}
		}
		select {
		case <-j.ended:
			return fmt.Errorf("the job ended before it ran: %v", j.runErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// waitSeen waits until the job has counted n events in this process.
func (j *job) waitSeen(ctx context.Context, n int64) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for statepipe.Seen.Load() < n {
		select {
		case <-j.ended:
			return fmt.Errorf("the job ended after %d of the %d events waited for (raise --events): %v", statepipe.Seen.Load(), n, j.runErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// sleep waits d unless the job ends first.
func (j *job) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-j.ended:
		return fmt.Errorf("the job ended during the measurements (raise --events): %v", j.runErr)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// savepoint takes a savepoint of the job over weir's savepoint service.
func (j *job) savepoint(ctx context.Context) (spStat, error) {
	seen := statepipe.Seen.Load()
	t0 := time.Now()
	path, err := portability.TakeSavepointWith(ctx, j.conn, j.id, portability.SavepointRequest{Target: *spTarget, Type: *spType})
	if err != nil {
		return spStat{}, fmt.Errorf("savepoint at %d events: %w", seen, err)
	}
	fmt.Fprintf(os.Stderr, "+%.1f s: savepoint requested at +%.1f s complete\n", time.Since(j.start).Seconds(), t0.Sub(j.start).Seconds())
	return spStat{Path: path, Secs: time.Since(t0).Seconds(), Seen: seen}, nil
}

// timeline logs the job's progress every second, for reading the
// windows against the checkpoints and savepoints logged beside it; stop
// ends it.
func (j *job) timeline() (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := statepipe.Seen.Load()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			n := statepipe.Seen.Load()
			fmt.Fprintf(os.Stderr, "+%.1f s: %d events counted, %d in the last second\n", time.Since(j.start).Seconds(), n, n-last)
			last = n
		}
	}()
	return func() { close(done); <-ended }
}

// measure is the run child's work: the state fills, then --pairs pairs
// of windows (checkpoints only, savepoints back to back; the order
// alternates, a savepoint window last in an odd pair), then the last
// savepoint, if the last window did not end with one.
func (j *job) measure(ctx context.Context, rep *childReport) error {
	if err := j.waitSeen(ctx, *keys+*keys/2); err != nil {
		return err
	}
	length := *windowLen
	for pair := range *pairs {
		order := []bool{false, true}
		if pair%2 == 1 {
			order = []bool{true, false}
		}
		for _, sps := range order {
			w, err := j.window(ctx, sps, length)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "window (savepoints %v): %.1f s, %d events, %.0f events/s, %d savepoints\n", w.Savepoints, w.Secs, w.Events, w.rate(), len(w.Taken))
			rep.Windows = append(rep.Windows, w)
			if sps {
				// A savepoint window spans its savepoints' checkpoints
				// and exports: later checkpoint-only windows last as
				// long, so that they span checkpoints too.
				length = max(length, time.Duration(w.Secs*float64(time.Second)))
			}
		}
	}
	if rep.Windows[len(rep.Windows)-1].Savepoints {
		return nil // runChild makes its last savepoint Final
	}
	sp, err := j.savepoint(ctx)
	rep.Final = sp
	return err
}

// window measures the job's throughput for length, with savepoints back
// to back (until the one in flight when --window has passed completes) or
// with checkpoints only.
func (j *job) window(ctx context.Context, savepoints bool, length time.Duration) (window, error) {
	w := window{Savepoints: savepoints}
	t0, s0 := time.Now(), statepipe.Seen.Load()
	if !savepoints {
		if err := j.sleep(ctx, length); err != nil {
			return w, err
		}
	}
	for savepoints && time.Since(t0) < *windowLen {
		sp, err := j.savepoint(ctx)
		if err != nil {
			return w, err
		}
		w.Taken = append(w.Taken, sp)
	}
	w.Secs, w.Events = time.Since(t0).Seconds(), statepipe.Seen.Load()-s0
	return w, nil
}

// cancel cancels the job over the Job API and waits for it to end.
func (j *job) cancel(ctx context.Context) error {
	select {
	case <-j.ended:
		return fmt.Errorf("job %s ended before it was cancelled: %v", j.id, j.runErr)
	default:
	}
	_, err := jobpb.NewJobServiceClient(j.conn).Cancel(ctx, &jobpb.CancelJobRequest{JobId: j.id})
	if err != nil {
		return fmt.Errorf("cancelling job %s: %w", j.id, err)
	}
	select {
	case <-j.ended: // the SDK reports the cancellation as an error
	case <-ctx.Done():
		return ctx.Err()
	}
	if st := j.srv.Jobs().Job(j.id).State(); st != jobpb.JobState_CANCELLED {
		return fmt.Errorf("job %s ended %s, not CANCELLED", j.id, st)
	}
	return nil
}

// nativeRecords stands for the records of a native savepoint, which holds
// Pebble files instead.
const nativeRecords = -1

// stat fills in what savepoint sp holds: its bytes on disk, the counting
// DoFn's records, and the checkpoint it was written from.
func (sp *spStat) stat(ctx context.Context) error {
	if sp.Bytes > 0 {
		return nil
	}
	r, err := inspect.OpenURL(ctx, sp.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	m := r.Metadata()
	if m.IsNative() {
		sp.Records = nativeRecords // its state is Pebble files, not records
	}
	for _, t := range m.Transforms {
		if strings.HasPrefix(t.UniqueName, "CountPerKey/") {
			for _, f := range t.Files {
				sp.Records += f.Records
			}
		}
	}
	// The engine names a savepoint c<checkpoint>_<nonce>.
	if _, err := fmt.Sscanf(m.ID, "c%d_", &sp.Checkpoint); err != nil {
		sp.Checkpoint = 0
	}
	dir, ok := strings.CutPrefix(sp.Path, "file://")
	if !ok {
		return fmt.Errorf("savepoint %s: not on file://", sp.Path)
	}
	return filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			sp.Bytes += fi.Size()
		}
		return err
	})
}
