package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/portability"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/sdkharness"
	"google.golang.org/grpc"

	"google.golang.org/protobuf/types/known/structpb"
)

// Config configures a weir server.
type Config struct {
	// Addr is the listen address; default 127.0.0.1:0.
	Addr string
	// Parallelism is the default number of subtasks per stage (0: CPUs);
	// a job's --parallelism overrides it.
	Parallelism int
	// TempDir holds job state; "" is the system temp dir.
	TempDir string
	Logger  *slog.Logger
	// HeartbeatInterval and HeartbeatTimeout tune hung-worker detection: a
	// worker with a bundle in flight that does not answer a progress request
	// within the timeout is killed and its bundles retried (zero: defaults).
	HeartbeatInterval, HeartbeatTimeout time.Duration
	// ProgressEvery is how often running jobs log their progress (records
	// read and output watermark of every stage); 0 never.
	ProgressEvery time.Duration
	// Checkpoints are the server's checkpoint defaults (zero value:
	// DefaultCheckpointConfig); jobs override them with pipeline options.
	Checkpoints CheckpointConfig
	// StorageOptions are passed to storage.Open for checkpoint dirs (for
	// example a GCS client).
	StorageOptions []storage.Option
	// OpenStorage, if set, opens checkpoint dirs instead of storage.Open
	// (tests wrap storage with it).
	OpenStorage func(ctx context.Context, url string) (storage.Storage, error)
	// CheckpointFault injects failures into the checkpoint protocol, and
	// OnRestart hears of every restart of a job from its checkpoint (tests).
	CheckpointFault func(point string, chk int64) error
	OnRestart       func(job string)
	// OnCheckpoint hears of every checkpoint of every job.
	OnCheckpoint func(job string, s engine.CheckpointStats)
	// MetricsAddr, if set, serves Prometheus metrics at /metrics there.
	MetricsAddr string
	// InProcess runs the workers of LOOPBACK (external) environments in
	// this process, through the Go SDK's exec package and without gRPC
	// (sdkharness.StartInProcess). Only for a server whose pipelines are
	// linked into this binary: the embedded runner (--runner=weir) sets it.
	InProcess bool
	// Limits are the engine's internal bounds (zero fields: defaults);
	// tests set them small and at random.
	Limits engine.Limits
}

// Server is a running weir: Job API, artifacts and Fn API on one port.
type Server struct {
	cfg  Config
	lis  net.Listener
	grpc *grpc.Server
	jobs *portability.Server
	fn   *sdkharness.Server
	log  *slog.Logger
	done chan struct{}

	metrics     *serverMetrics
	httpSrv     *http.Server
	httpDone    chan struct{}
	metricsAddr string
	nonce       string // distinguishes this server's workers from earlier lives'
}

// Start listens and serves until Stop.
func Start(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Checkpoints == (CheckpointConfig{}) {
		cfg.Checkpoints = DefaultCheckpointConfig()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	s := &Server{cfg: cfg, lis: lis, log: cfg.Logger, done: make(chan struct{}), metrics: newServerMetrics(), httpDone: make(chan struct{}), nonce: fmt.Sprintf("%04x", rand.Uint32()&0xffff)}
	if cfg.MetricsAddr != "" {
		if s.metricsAddr, err = s.serveMetrics(cfg.MetricsAddr); err != nil {
			lis.Close()
			return nil, err
		}
	}
	s.fn = sdkharness.NewServer(cfg.Logger)
	s.fn.SetEndpoint(lis.Addr().String())
	s.jobs, err = portability.NewServer(&executor{s: s}, portability.Options{Logger: cfg.Logger})
	if err != nil {
		lis.Close()
		if s.httpSrv != nil {
			s.httpSrv.Close()
		}
		return nil, fmt.Errorf("starting job service: %w", err)
	}
	s.jobs.SetEndpoint(lis.Addr().String())
	s.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(math.MaxInt32), grpc.MaxSendMsgSize(math.MaxInt32))
	s.jobs.Register(s.grpc)
	s.fn.Register(s.grpc)
	go func() { // owned by the Server: ends on Stop.
		defer close(s.done)
		if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			s.log.Error("grpc server stopped", "err", err)
		}
	}()
	return s, nil
}

// Endpoint is the address clients and harnesses dial.
func (s *Server) Endpoint() string { return s.lis.Addr().String() }

// Jobs is the job service, for the CLI and web page.
func (s *Server) Jobs() *portability.Server { return s.jobs }

// MetricsAddr is where /metrics is served ("" if it is not).
func (s *Server) MetricsAddr() string { return s.metricsAddr }

// Stop cancels running jobs and stops serving.
func (s *Server) Stop() {
	s.jobs.Stop()
	s.grpc.Stop()
	<-s.done
	if s.httpSrv != nil {
		s.httpSrv.Close()
		<-s.httpDone
	}
}

// executor plans and runs jobs for the job service.
type executor struct{ s *Server }

func (x *executor) Validate(p *pipepb.Pipeline, _ *structpb.Struct) error {
	if err := plan.Validate(p); err != nil {
		return err
	}
	_, err := plan.Build(p, plan.Options{LiftCombiners: true})
	return err
}

func (x *executor) Execute(ctx context.Context, job *portability.Job) error {
	p, err := plan.Build(job.Pipeline, plan.Options{LiftCombiners: true})
	if err != nil {
		return err
	}
	par := x.s.cfg.Parallelism
	if par <= 0 {
		par = runtime.NumCPU()
	}
	if v := optionInt(job.Options, "beam:option:parallelism:v1"); v > 0 {
		par = v
	}
	envs := job.Pipeline.GetComponents().GetEnvironments()
	start := func(ctx context.Context, envID, workerID string) (harness.Worker, error) {
		env := envs[envID]
		wo := sdkharness.WorkerOptions{
			Options:           job.Options,
			Dependencies:      env.GetDependencies(),
			HeartbeatInterval: x.s.cfg.HeartbeatInterval,
			HeartbeatTimeout:  x.s.cfg.HeartbeatTimeout,
		}
		// The nonce keeps worker and instruction IDs unique across server
		// lives: a resumed job has the same job ID, and an SDK process
		// may still know the old instructions.
		id := job.ID + "-" + x.s.nonce + "-" + workerID
		return x.s.fn.Start(ctx, sdkharness.Environment{
			ID:           envID,
			Proto:        env,
			InProcess:    x.s.cfg.InProcess,
			WorkerBinary: func(role string) string { return job.ArtifactPath(envID, role) },
		}, id, wo)
	}
	c, err := x.s.cfg.Checkpoints.forJob(job.Options)
	if err != nil {
		return err
	}
	if c.SavepointPlanOnly {
		return x.planOnly(ctx, job, p, par, c)
	}
	ck, st, err := x.checkpointOptions(ctx, job, job.Pipeline, c)
	if err != nil {
		return err
	}
	var fromSP *engine.SavepointSource
	if c.SavepointPath != "" && (ck == nil || ck.Restore == nil) {
		var spStore storage.Storage
		if fromSP, spStore, err = x.openSavepoint(ctx, c); err != nil {
			if st != nil {
				st.Close()
			}
			return err
		}
		defer spStore.Close()
		x.s.log.Info("starting from savepoint", "job", job.ID, "savepoint", c.SavepointPath)
	}
	if st != nil {
		defer st.Close() // releases the job's lease on its checkpoints
		if r := st.finished; r != nil {
			msg := fmt.Sprintf("job %s finished at %s (its last run took checkpoints from %d to %d): nothing to resume; run it without --resume to start it again",
				job.Name, r.Finished.UTC().Format(time.RFC3339), r.First, r.Last)
			x.s.log.Info(msg, "job", job.ID)
			job.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, msg)
			return nil
		}
		ck.OnCheckpoint = func(c engine.CheckpointStats) {
			st.checkpointed(c)
			x.s.metrics.checkpoint(job.ID, c)
			if x.s.cfg.OnCheckpoint != nil {
				x.s.cfg.OnCheckpoint(job.ID, c)
			}
		}
		ck.OnJobDone = func(ctx context.Context) error { return st.finish(ctx, time.Now()) }
		ck.OnRestart = func() {
			x.s.metrics.restart(job.ID)
			if x.s.cfg.OnRestart != nil {
				x.s.cfg.OnRestart(job.ID)
			}
		}
	}
	e := engine.New(p, engine.Options{
		Parallelism:    par,
		MaxParallelism: c.MaxParallelism,
		TempDir:        x.s.cfg.TempDir,
		Logger:         x.s.log.With("job", job.ID),
		StartWorker:    start,
		API:            x.s.fn.ApiDescriptor(),
		OnMetrics:      job.UpdateMetrics,
		ProgressEvery:  x.s.cfg.ProgressEvery,
		Checkpoint:     ck,
		FromSavepoint:  fromSP,
		Limits:         x.s.cfg.Limits,
	})
	job.OnDrain(e.Drain)
	job.OnSavepoint(func(ctx context.Context, req portability.SavepointRequest) (string, error) {
		return x.takeSavepoint(ctx, e, c.SavepointDir, req)
	})
	job.OnStop(func(ctx context.Context, req portability.SavepointRequest) (string, error) {
		return x.takeSavepoint(ctx, stopper{e, req.Drain}, c.SavepointDir, req)
	})
	job.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, fmt.Sprintf("running %d stages with parallelism %d", len(p.Stages), par))
	if st != nil {
		// st.run fails the job if it loses the lease.
		if err := st.run(ctx, e.Run); err != nil {
			return err
		}
		if st.recorded.Load() {
			return nil // the engine had it recorded before its last finalizations
		}
		// Stopped with a savepoint (the run ended without the job's end),
		// or the record failed then: try again.
		if err := st.finish(ctx, time.Now()); err != nil {
			// The job's results are complete; only --resume will not know.
			x.s.log.Warn("the job finished, but its run record could not say so", "job", job.ID, "err", err)
			job.Message(jobpb.JobMessage_JOB_MESSAGE_WARNING, err.Error())
		}
		return nil
	}
	return e.Run(ctx)
}

func optionInt(opts *structpb.Struct, key string) int {
	v, ok := opts.GetFields()[key]
	if !ok {
		return 0
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		return int(k.NumberValue)
	case *structpb.Value_StringValue:
		n, _ := strconv.Atoi(k.StringValue)
		return n
	}
	return 0
}
