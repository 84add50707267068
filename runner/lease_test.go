package runner_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal/runnerlib"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

// submitJob runs p on srv as a job named name through Beam's job client,
// without touching the SDK's global flags (so that two jobs can run at
// once), and waits for it to end. srv must run LOOPBACK workers in process.
func submitJob(t *testing.T, srv *runner.Server, p *beam.Pipeline, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	edges, _, err := p.Build()
	if err != nil {
		return fmt.Errorf("building pipeline: %w", err)
	}
	env, err := graphx.CreateEnvironment(ctx, graphx.URNEnvExternal, func(context.Context) string { return "localhost:1" })
	if err != nil {
		return err
	}
	pipe, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
	if err != nil {
		return fmt.Errorf("marshalling pipeline: %w", err)
	}
	_, err = runnerlib.Execute(ctx, pipe, srv.Endpoint(), &runnerlib.JobOptions{Name: name, Loopback: true}, false)
	if ctx.Err() != nil {
		t.Errorf("job %s did not end within its deadline (err %v)", name, err)
	}
	return err
}

// leaseRuns numbers the runs of the lease tests, so that their sinks
// (committed output is kept per sink name for the test binary's life) are
// new under -count.
var leaseRuns atomic.Int64

// leaseSink names a new sink.
func leaseSink(name string) string { return fmt.Sprintf("%s-%d", name, leaseRuns.Add(1)) }

// gate blocks the first call of a checkpoint fault point until opened: a
// job that reached it holds its lease (FaultBundle: it has run a bundle,
// with checkpoints on).
type gate struct {
	point   string
	entered chan struct{}
	open    chan struct{}
	once    atomic.Bool
	opener  sync.Once
}

func newGate(point string) *gate {
	return &gate{point: point, entered: make(chan struct{}), open: make(chan struct{})}
}

func (g *gate) inject(point string, _ int64) error {
	if point == g.point && g.once.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	return nil
}

func (g *gate) release() { g.opener.Do(func() { close(g.open) }) }

// waitEntered waits until the gate is reached, failing if done (the job's
// end) comes first.
func (g *gate) waitEntered(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case <-g.entered:
	case err := <-done:
		t.Fatalf("the job ended before it reached fault point %s: %v", g.point, err)
	case <-time.After(2 * time.Minute):
		t.Fatalf("the job did not reach fault point %s within two minutes", g.point)
	}
}

// TestCheckpointLeaseRefusesSecondJob: while a job runs with checkpoints,
// a second job with the same --job_name on the same checkpoint dir and
// server is refused, naming the dir, the job and who holds its lease; the
// first one still commits its exact result, and once it has ended its
// lease is gone and the name can run again.
func TestCheckpointLeaseRefusesSecondJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	const job = "lease-twice"
	g := newGate(engine.FaultBundle)
	srv := startWeirWith(t, runner.Config{
		Parallelism:     2,
		InProcess:       true,
		Checkpoints:     runner.CheckpointConfig{Dir: "file://" + dir, Interval: 50 * time.Millisecond, Retained: 1},
		CheckpointFault: g.inject,
	})
	t.Cleanup(g.release) // before srv.Stop, whatever happens

	sp := crashSpec(leaseSink("lease-first"))
	done := make(chan error, 1)
	go func() { done <- submitJob(t, srv, crashPipeline(sp), job) }()
	g.waitEntered(t, done) // the first job holds the lease and runs

	holder, err := checkpoint.ReadLease(context.Background(), st, job)
	if err != nil {
		t.Fatalf("the running job's lease: %v", err)
	}
	if holder.PID != os.Getpid() || holder.Job != job {
		t.Fatalf("lease %+v, want one of job %s held by this process", holder, job)
	}
	err = submitJob(t, srv, crashPipeline(crashSpec(leaseSink("lease-second"))), job)
	if err == nil {
		t.Fatal("a second job with the same name and checkpoint dir ran")
	}
	host, _ := checkpoint.LocalHost()
	for _, want := range []string{"file://" + dir, `"` + job + `"`, "_lease", fmt.Sprintf("pid %d", os.Getpid()), "host " + host, "another job of this process", "since", "expiring", "stop it", "--job_name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the second job's error does not say %q:\n%v", want, err)
		}
	}

	g.release()
	if err := <-done; err != nil {
		t.Fatalf("the first job failed: %v", err)
	}
	checkCommitted(t, sp, "a second job was refused while this one ran")
	if _, err := checkpoint.ReadLease(context.Background(), st, job); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("lease after the job ended: %v, want none", err)
	}
	metas, _, err := checkpoint.List(context.Background(), st, job)
	if err != nil {
		t.Fatalf("listing the first job's checkpoints: %v", err)
	}
	t.Logf("the first job left %d checkpoints", len(metas))

	again := crashSpec(leaseSink("lease-again"))
	if err := submitJob(t, srv, crashPipeline(again), job); err != nil {
		t.Fatalf("the job run again after the first ended: %v", err)
	}
	checkCommitted(t, again, "run again after the lease was released")
	if _, err := checkpoint.ReadLease(context.Background(), st, job); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("lease after the second run: %v, want none", err)
	}
}

// deadPID returns the PID of a process of this machine that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return cmd.Process.Pid
}

// TestCheckpointLeaseTakeover: a lease left behind by a job that is gone
// does not block its restart: one that has expired, or (at once) one whose
// holder was a process of this machine that is no longer running, as after
// kill -9.
func TestCheckpointLeaseTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs checkpointed streaming jobs")
	}
	now := time.Now()
	host, node := checkpoint.LocalHost()
	for _, tc := range []struct {
		name  string
		stale checkpoint.LeaseInfo
	}{
		{"expired", checkpoint.LeaseInfo{Host: "elsewhere", Node: "x", PID: 1, Since: now.Add(-2 * time.Hour), Expires: now.Add(-time.Hour)}},
		{"holder not running", checkpoint.LeaseInfo{Host: host, Node: node, PID: deadPID(t), Since: now, Expires: now.Add(time.Hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := storage.NewFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			job := "lease-" + strings.ReplaceAll(tc.name, " ", "-")
			stale := tc.stale
			stale.Owner, stale.Job = "gone", job
			if err := st.PutIfAbsent(context.Background(), checkpoint.LeaseName(job), checkpoint.EncodeLease(stale)); err != nil {
				t.Fatal(err)
			}
			srv := startWeirWith(t, runner.Config{
				Parallelism: 2,
				InProcess:   true,
				Checkpoints: runner.CheckpointConfig{Dir: "file://" + dir, Interval: 50 * time.Millisecond, Resume: true},
			})
			sp := crashSpec(leaseSink(job))
			if err := submitJob(t, srv, crashPipeline(sp), job); err != nil {
				t.Fatalf("job over a stale lease (%s): %v", stale, err)
			}
			checkCommitted(t, sp, "took over a stale lease")
			if _, err := checkpoint.ReadLease(context.Background(), st, job); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("lease after the job ended: %v, want none", err)
			}
		})
	}
}

// TestCheckpointLeaseLostFailsJob: a running job whose lease someone else
// takes finds out at its next renewal, stops (its checkpoint writes are
// refused from then on) and fails saying who took it; it leaves the new
// holder's lease alone.
func TestCheckpointLeaseLostFailsJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a checkpointed streaming job")
	}
	dir := t.TempDir()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	const job = "lease-lost"
	g := newGate(engine.FaultBundle)
	srv := startWeirWith(t, runner.Config{
		Parallelism: 2,
		InProcess:   true,
		// A TTL no loaded machine can outlast, renewed often.
		Checkpoints:     runner.CheckpointConfig{Dir: "file://" + dir, Interval: 50 * time.Millisecond, LeaseTTL: time.Hour, LeaseRenewal: 20 * time.Millisecond},
		CheckpointFault: g.inject,
	})
	t.Cleanup(g.release)
	// It would run for hours: only losing its lease ends it.
	sp := CrashSpec{Events: 1 << 40, Keys: 40, Batch: 25, PauseMS: 15, Splits: 2, Sink: leaseSink("lease-lost")}
	done := make(chan error, 1)
	go func() { done <- submitJob(t, srv, crashPipeline(sp), job) }()
	g.waitEntered(t, done)

	thief := checkpoint.LeaseInfo{Owner: "thief", Job: job, Host: "elsewhere", PID: 9, Since: time.Now(), Expires: time.Now().Add(time.Hour)}
	for {
		_, v, err := st.GetVersion(context.Background(), checkpoint.LeaseName(job))
		if err != nil {
			t.Fatal(err)
		}
		if _, err = st.PutIf(context.Background(), checkpoint.LeaseName(job), checkpoint.EncodeLease(thief), v); err == nil {
			break
		} else if !errors.Is(err, storage.ErrChanged) { // a renewal came first
			t.Fatal(err)
		}
	}
	g.release()
	err = <-done
	if err == nil {
		t.Fatal("the job whose lease was taken succeeded")
	}
	for _, want := range []string{"checkpoint lease lost", "taken over by pid 9 on host elsewhere", job + "/_lease"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the job's error does not say %q:\n%v", want, err)
		}
	}
	if h, err := checkpoint.ReadLease(context.Background(), st, job); err != nil || h.Owner != "thief" {
		t.Fatalf("the new holder's lease after the job ended: %+v, %v", h, err)
	}
}
