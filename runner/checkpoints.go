package runner

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path"
	"strings"
	"sync/atomic"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
	"google.golang.org/protobuf/types/known/structpb"
)

// CheckpointConfig is how a job checkpoints and recovers. A server has
// defaults (the flags of `weir serve`); a job overrides them with the same
// names as pipeline options (flags of the pipeline's program).
type CheckpointConfig struct {
	Dir             string        // file:///abs/dir or gs://bucket/prefix; "" off
	Interval        time.Duration // 0: off in batch, DefaultStreamingInterval in streaming
	Timeout         time.Duration
	MinPause        time.Duration
	Retained        int
	RestartAttempts int
	RestartBackoff  time.Duration
	// Resume starts the job from its latest completed checkpoint in Dir
	// (found by job name), if it has one.
	Resume bool
	// LeaseTTL and LeaseRenewal time the lease a job holds on its
	// checkpoints (<dir>/<job>/_lease) while it runs, which refuses a
	// second job of the same name on the same dir (0: 30s, and a third of
	// the TTL).
	LeaseTTL, LeaseRenewal time.Duration
	// SavepointDir is where a savepoint of the job goes when its request
	// (`weir savepoint take`) names no target: file:///abs/dir or
	// gs://bucket/prefix; "" none.
	SavepointDir string
	// SavepointPath is the savepoint the job starts from ("" none): the
	// URL of its directory. AllowNonRestored starts it even if the
	// savepoint holds state the pipeline has no place for (dropped).
	SavepointPath    string
	AllowNonRestored bool
	// TransformNameMapping is JSON of the savepoint's transform unique-name
	// prefixes to the pipeline's ("" drops the state): Dataflow's
	// --transform_name_mapping.
	TransformNameMapping string
	// MaxParallelism is the number of key groups of the job's state (0:
	// state.DefaultMaxParallelism), the most subtasks a stage may have;
	// fixed for the life of its checkpoints, changed offline with
	// `weir savepoint rewrite`.
	MaxParallelism int
	// SavepointPlanOnly runs nothing: the job prints (logs, and sends as
	// a job message) where the state of SavepointPath would go in its
	// pipeline, what is migrated, dropped or refused, and which unique
	// names will not stay stable, then ends DONE.
	SavepointPlanOnly bool
}

// DefaultStreamingInterval is the checkpoint interval of a streaming job
// with a checkpoint dir and no interval of its own.
const DefaultStreamingInterval = 10 * time.Second

// Bind defines the checkpoint flags on fs with c's values as defaults.
func (c *CheckpointConfig) Bind(fs *flag.FlagSet) {
	fs.StringVar(&c.Dir, "checkpoint_dir", c.Dir, "where checkpoints go: file:///abs/dir or gs://bucket/prefix (empty: no checkpoints)")
	fs.DurationVar(&c.Interval, "checkpointing_interval", c.Interval, "time between checkpoints (0: none in batch jobs, 10s in streaming jobs with a checkpoint dir)")
	fs.DurationVar(&c.Timeout, "checkpoint_timeout", c.Timeout, "abort a checkpoint that takes longer (0: 10m)")
	fs.DurationVar(&c.MinPause, "min_pause_between_checkpoints", c.MinPause, "least time from the end of a checkpoint to the start of the next")
	fs.IntVar(&c.Retained, "retained_checkpoints", c.Retained, "completed checkpoints kept (0: 1)")
	fs.IntVar(&c.RestartAttempts, "restart_attempts", c.RestartAttempts, "how often a failed job with checkpoints is restored from its latest checkpoint and restarted")
	fs.DurationVar(&c.RestartBackoff, "restart_backoff", c.RestartBackoff, "pause before each restart")
	fs.BoolVar(&c.Resume, "resume", c.Resume, "start the job from its latest completed checkpoint in --checkpoint_dir (found by --job_name)")
	fs.DurationVar(&c.LeaseTTL, "checkpoint_lease_ttl", c.LeaseTTL, "how long the lease a job holds on its checkpoints outlives its last renewal: a job of the same name may take it over after that (0: 30s)")
	fs.DurationVar(&c.LeaseRenewal, "checkpoint_lease_renewal", c.LeaseRenewal, "time between renewals of a job's checkpoint lease (0: a third of the TTL)")
	fs.StringVar(&c.SavepointDir, "savepoint_dir", c.SavepointDir, "where savepoints of the job go when weir savepoint, weir stop or SIGTERM name no --target: file:///abs/dir or gs://bucket/prefix")
	fs.StringVar(&c.SavepointPath, "savepoint_path", c.SavepointPath, "start the job from this savepoint (the URL of its directory); a checkpoint of the job's own run, if any, comes first")
	fs.BoolVar(&c.AllowNonRestored, "allow_non_restored_state", c.AllowNonRestored, "start from --savepoint_path even if it holds state of transforms the pipeline no longer has (it is dropped)")
	fs.StringVar(&c.TransformNameMapping, "transform_name_mapping", c.TransformNameMapping, `JSON of the savepoint's transform unique-name prefixes to the pipeline's, {"old":"new"}; "" drops that state`)
	fs.IntVar(&c.MaxParallelism, "max_parallelism", c.MaxParallelism, "key groups of the job's state, the most subtasks a stage may have (0: 128); a checkpoint or savepoint restores only into its own (weir savepoint rewrite changes a savepoint's)")
	fs.BoolVar(&c.SavepointPlanOnly, "savepoint_plan_only", c.SavepointPlanOnly, "run nothing: print where the state of --savepoint_path would go in the pipeline (restored, renamed, migrated, dropped or refused, and why) and which unique names will not stay stable, then end")
}

// DefaultCheckpointConfig is the configuration a server starts with.
func DefaultCheckpointConfig() CheckpointConfig {
	return CheckpointConfig{Retained: 1, RestartAttempts: 3, RestartBackoff: time.Second}
}

// The checkpoint flags are pipeline options of a program that imports this
// package: the Go SDK sends the flags set on its command line to the job
// server, which reads them in forJob. A flag the program already has (the
// Dataflow runner defines --transform_name_mapping, with the same JSON) is
// left as it is: its value reaches the job all the same.
func init() {
	c := DefaultCheckpointConfig()
	fs := flag.NewFlagSet("weir", flag.ContinueOnError)
	c.Bind(fs)
	fs.VisitAll(func(f *flag.Flag) {
		if flag.CommandLine.Lookup(f.Name) == nil {
			flag.CommandLine.Var(f.Value, f.Name, f.Usage)
		}
	})
}

// forJob is the server's configuration overridden by the checkpoint
// options the job set.
func (c CheckpointConfig) forJob(opts *structpb.Struct) (CheckpointConfig, error) {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	c.Bind(fs)
	set := goOptions(opts)
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := set[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("pipeline option --%s=%q: %w", f.Name, v, err))
			}
		}
	})
	return c, errors.Join(errs...)
}

// goOptions are the flags a Go pipeline set, as the SDK sends them.
func goOptions(opts *structpb.Struct) map[string]string {
	out := map[string]string{}
	wrap := opts.GetFields()["beam:option:go_options:v1"].GetStructValue()
	for k, v := range wrap.GetFields()["options"].GetStructValue().GetFields() {
		out[k] = v.GetStringValue()
	}
	return out
}

// checkpointOptions builds the engine's checkpoint options for a job (nil
// when it has no checkpoint dir), finding the checkpoint to resume from.
// The job holds its checkpoints' lease from here: the caller closes the
// returned storage when the job has ended, which releases it.
func (x *executor) checkpointOptions(ctx context.Context, job *portability.Job, p *pipepb.Pipeline, c CheckpointConfig) (*engine.CheckpointOptions, *jobStorage, error) {
	x.s.log.Debug("checkpoint options", "job", job.Name, "dir", c.Dir, "interval", c.Interval, "resume", c.Resume, "options", goOptions(job.Options))
	if c.Dir == "" {
		if c.Resume {
			return nil, nil, errors.New("--resume needs --checkpoint_dir")
		}
		return nil, nil, nil
	}
	if err := storage.CheckName(job.Name); err != nil || strings.Contains(job.Name, "/") {
		return nil, nil, fmt.Errorf("job name %q cannot name its checkpoints in %s: use --job_name with letters, digits, '-', '_' or '.'", job.Name, c.Dir)
	}
	raw, err := x.openStorage(ctx, c.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint dir: %w", err)
	}
	st, err := x.leaseCheckpoints(ctx, raw, job.Name, c)
	if err != nil {
		raw.Close()
		return nil, nil, err
	}
	interval := c.Interval
	if interval == 0 && unbounded(p) {
		interval = DefaultStreamingInterval
	}
	o := &engine.CheckpointOptions{
		Storage:         st,
		Job:             job.Name,
		Interval:        interval,
		Timeout:         c.Timeout,
		MinPause:        c.MinPause,
		Retained:        c.Retained,
		RestartAttempts: c.RestartAttempts,
		RestartBackoff:  c.RestartBackoff,
		Fault:           x.s.cfg.CheckpointFault,
	}
	run, err := checkpoint.ReadRun(ctx, st, job.Name)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("not started: %w", err)
	}
	if c.Resume {
		if run != nil && run.Finished != nil {
			// Nothing to resume: the run finished and committed everything.
			st.finished = run
			return o, st, nil
		}
		meta, skipped, err := checkpoint.Latest(ctx, st, job.Name)
		if skipped != nil {
			x.s.log.Warn("passing over unusable checkpoints", "job", job.Name, "err", skipped)
		}
		switch {
		case err == nil && run.Mine(meta.CheckpointID):
			o.Restore = meta
			x.s.log.Info("resuming from checkpoint", "job", job.Name, "checkpoint", meta.CheckpointID)
		case err == nil:
			x.s.log.Info("no checkpoint of the job's last run to resume from (the latest is of an earlier run): starting fresh",
				"job", job.Name, "dir", c.Dir, "checkpoint", meta.CheckpointID, "run_since", run.First)
		case errors.Is(err, checkpoint.ErrNoCheckpoint):
			x.s.log.Info("no checkpoint to resume from: starting fresh", "job", job.Name, "dir", c.Dir)
		default:
			st.Close()
			return nil, nil, fmt.Errorf("resuming job %s: %w", job.Name, err)
		}
	}
	if o.Restore == nil || run == nil {
		// A new run: checkpoints from here on are its own.
		first, err := checkpoint.NextID(ctx, st, job.Name)
		if err == nil && o.Restore != nil {
			first = 1 // a dir of an older weir: its checkpoints are this run's
		}
		if err == nil {
			run = &checkpoint.Run{Job: job.Name, First: first, Started: time.Now()}
			err = checkpoint.WriteRun(ctx, st, job.Name, *run)
		}
		if err != nil {
			st.Close()
			return nil, nil, fmt.Errorf("not started: %w", err)
		}
	}
	o.Since = run.First
	st.rec = run
	return o, st, nil
}

// openStorage opens a checkpoint or savepoint dir with the server's
// OpenStorage, or storage.Open with its StorageOptions.
func (x *executor) openStorage(ctx context.Context, url string) (storage.Storage, error) {
	if x.s.cfg.OpenStorage != nil {
		return x.s.cfg.OpenStorage(ctx, url)
	}
	return storage.Open(ctx, url, x.s.cfg.StorageOptions...)
}

// openSavepoint opens the savepoint a job starts from (the URL of its
// directory); the caller closes the storage when the job has ended.
func (x *executor) openSavepoint(ctx context.Context, c CheckpointConfig) (*engine.SavepointSource, storage.Storage, error) {
	u, err := inspect.StoreURL(c.SavepointPath)
	if err != nil {
		return nil, nil, fmt.Errorf("--savepoint_path: %w", err)
	}
	parent, dir := path.Split(strings.TrimRight(u, "/"))
	if dir == "" || storage.CheckName(dir) != nil {
		return nil, nil, fmt.Errorf("--savepoint_path %s: not the URL of a savepoint directory", c.SavepointPath)
	}
	st, err := x.openStorage(ctx, parent)
	if err != nil {
		return nil, nil, fmt.Errorf("--savepoint_path %s: %w", c.SavepointPath, err)
	}
	src := &engine.SavepointSource{Storage: st, Dir: dir, AllowNonRestored: c.AllowNonRestored}
	if c.TransformNameMapping != "" {
		if err := json.Unmarshal([]byte(c.TransformNameMapping), &src.Rename); err != nil {
			st.Close()
			return nil, nil, fmt.Errorf(`--transform_name_mapping %q: want JSON like {"old name":"new name"}: %w`, c.TransformNameMapping, err)
		}
	}
	return src, st, nil
}

// planOnly is a job run with --savepoint_plan_only: it plans the restore
// of --savepoint_path into pipeline p, logs the plan and sends it as a
// job message, and runs nothing. A plan that refuses the job is the
// plan's answer, not the job's failure.
func (x *executor) planOnly(ctx context.Context, job *portability.Job, p *plan.Plan, par int, c CheckpointConfig) error {
	if c.SavepointPath == "" {
		return errors.New("--savepoint_plan_only plans a restore from a savepoint: set --savepoint_path")
	}
	src, st, err := x.openSavepoint(ctx, c)
	if err != nil {
		return err
	}
	defer st.Close()
	e := engine.New(p, engine.Options{Parallelism: par, MaxParallelism: c.MaxParallelism, TempDir: x.s.cfg.TempDir, Logger: x.s.log.With("job", job.ID), FromSavepoint: src})
	rp, err := e.SavepointPlan(ctx)
	if err != nil {
		return fmt.Errorf("--savepoint_plan_only: %w", err)
	}
	text := rp.String()
	x.s.log.Info("savepoint restore plan (--savepoint_plan_only: the job does not run)", "job", job.ID, "plan", text)
	job.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, text)
	return nil
}

// savepointer is what takes a job's savepoints: the engine. Savepoint
// takes one into target, in format, and returns its directory's name
// there.
type savepointer interface {
	Savepoint(ctx context.Context, target storage.Storage, format savepoint.Format) (string, error)
}

// stopper is a savepointer that stops the job with its savepoint
// (draining it first if drain is set).
type stopper struct {
	e     *engine.Engine
	drain bool
}

func (s stopper) Savepoint(ctx context.Context, target storage.Storage, format savepoint.Format) (string, error) {
	return s.e.Stop(ctx, target, s.drain, format)
}

// takeSavepoint takes a savepoint of a job with sp into req.Target, or into
// the job's --savepoint_dir (dir) if that is "", of type req.Type, and
// returns the savepoint's URL.
func (x *executor) takeSavepoint(ctx context.Context, sp savepointer, dir string, req portability.SavepointRequest) (string, error) {
	format, err := savepoint.ParseFormat(req.Type)
	if err != nil {
		return "", err
	}
	target := req.Target
	if target == "" {
		target = dir
	}
	if target == "" {
		return "", errors.New("no --savepoint_dir and no --target")
	}
	st, err := x.openStorage(ctx, target)
	if err != nil {
		return "", fmt.Errorf("savepoint target %s: %w", target, err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			x.s.log.Warn("closing the savepoint target", "target", target, "err", err)
		}
	}()
	name, err := sp.Savepoint(ctx, st, format)
	if err != nil {
		return "", fmt.Errorf("savepoint into %s: %w", target, err)
	}
	return strings.TrimRight(st.String(), "/") + "/" + name, nil
}

// jobStorage is a job's checkpoint storage while the job holds the lease on
// its checkpoints (checkpoint.AcquireLease): every write fails once the
// lease is lost, and Close releases the lease.
type jobStorage struct {
	storage.Storage // fenced by the lease
	raw             storage.Storage
	lease           *checkpoint.Lease
	log             *slog.Logger
	// rec is this run's record; finished is set instead when --resume
	// found the job's last run finished: there is nothing to run.
	rec, finished *checkpoint.Run
	last          atomic.Int64 // the latest checkpoint this run completed
	recorded      atomic.Bool  // the run record says the job finished
}

// leaseCheckpoints takes the lease on job's checkpoints in st before
// anything reads or writes them: a second job of the same name on the same
// dir is refused, with an error naming the holder.
func (x *executor) leaseCheckpoints(ctx context.Context, st storage.Storage, job string, c CheckpointConfig) (*jobStorage, error) {
	log := x.s.log.With("job", job)
	lease, err := checkpoint.AcquireLease(ctx, st, job, checkpoint.LeaseOptions{
		TTL:   c.LeaseTTL,
		Renew: c.LeaseRenewal,
		OnRenewError: func(err error) {
			log.Warn("renewing the checkpoint lease failed; retrying", "err", err)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("not started: %w", err)
	}
	if prev, why := lease.TookOver(); prev != nil {
		log.Warn("took over the checkpoint lease of a job that is gone", "dir", st.String(), "previous", prev.String(), "because", why)
	}
	return &jobStorage{Storage: lease.Fence(st), raw: st, lease: lease, log: log}, nil
}

// checkpointed hears of every checkpoint of the run.
func (s *jobStorage) checkpointed(c engine.CheckpointStats) {
	if c.Failed == "" && c.ID > s.last.Load() {
		s.last.Store(c.ID)
	}
}

// finish records that the run ended successfully, while the job still holds
// the lease: a --resume after this has nothing to run.
func (s *jobStorage) finish(ctx context.Context, now time.Time) error {
	r := *s.rec
	r.Finished, r.Last = &now, s.last.Load()
	if err := checkpoint.WriteRun(ctx, s.Storage, r.Job, r); err != nil {
		return fmt.Errorf("the job's results are complete, but not the record that it finished: a --resume would run it again from checkpoint %d: %w", r.Last, err)
	}
	s.recorded.Store(true)
	return nil
}

// Close releases the lease (if it is still ours) and closes the storage.
func (s *jobStorage) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.lease.Release(ctx)
	if err != nil {
		s.log.Warn("the checkpoint lease stays until it expires", "err", err)
	}
	return errors.Join(err, s.raw.Close())
}

// run runs the job with ctx cancelled if the lease is lost (taken over,
// deleted, or expired without renewal), and then fails it saying so: it has
// stopped writing checkpoints, which the fence already refuses.
func (s *jobStorage) run(ctx context.Context, run func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watched := make(chan struct{})
	go func() { // owned by run: ends before it returns
		defer close(watched)
		select {
		case <-s.lease.Lost():
			cancel(s.lease.Err())
		case <-ctx.Done():
		}
	}()
	err := run(ctx)
	cause := context.Cause(ctx)
	cancel(nil)
	<-watched
	if errors.Is(cause, checkpoint.ErrLeaseLost) {
		return fmt.Errorf("job stopped: it may no longer write its checkpoints: %w", cause)
	}
	return err
}

// unbounded reports whether the pipeline has an unbounded PCollection: a
// streaming job.
func unbounded(p *pipepb.Pipeline) bool {
	for _, pc := range p.GetComponents().GetPcollections() {
		if pc.GetIsBounded() == pipepb.IsBounded_UNBOUNDED {
			return true
		}
	}
	return false
}
