package runner

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner/engine"
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
}

// DefaultCheckpointConfig is the configuration a server starts with.
func DefaultCheckpointConfig() CheckpointConfig {
	return CheckpointConfig{Retained: 1, RestartAttempts: 3, RestartBackoff: time.Second}
}

// The checkpoint flags are pipeline options of a program that imports this
// package: the Go SDK sends the flags set on its command line to the job
// server, which reads them in forJob.
func init() {
	c := DefaultCheckpointConfig()
	c.Bind(flag.CommandLine)
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
func (x *executor) checkpointOptions(ctx context.Context, job *portability.Job, p *pipepb.Pipeline) (*engine.CheckpointOptions, storage.Storage, error) {
	c, err := x.s.cfg.Checkpoints.forJob(job.Options)
	if err != nil {
		return nil, nil, err
	}
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
	open := x.s.cfg.OpenStorage
	if open == nil {
		open = func(ctx context.Context, url string) (storage.Storage, error) {
			return storage.Open(ctx, url, x.s.cfg.StorageOptions...)
		}
	}
	st, err := open(ctx, c.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("checkpoint dir: %w", err)
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
	if c.Resume {
		meta, skipped, err := checkpoint.Latest(ctx, st, job.Name)
		if skipped != nil {
			x.s.log.Warn("passing over unusable checkpoints", "job", job.Name, "err", skipped)
		}
		switch {
		case err == nil:
			o.Restore = meta
			x.s.log.Info("resuming from checkpoint", "job", job.Name, "checkpoint", meta.CheckpointID)
		case errors.Is(err, checkpoint.ErrNoCheckpoint):
			x.s.log.Info("no checkpoint to resume from: starting fresh", "job", job.Name, "dir", c.Dir)
		default:
			st.Close()
			return nil, nil, fmt.Errorf("resuming job %s: %w", job.Name, err)
		}
	}
	return o, st, nil
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
