package sdkharness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// WorkerOptions describe the job a worker runs for.
type WorkerOptions struct {
	Options        *structpb.Struct
	RetrievalToken string
	Dependencies   []*pipepb.ArtifactInformation
	// HeartbeatInterval and HeartbeatTimeout tune hung-worker detection
	// (zero: DefaultHeartbeatInterval, DefaultHeartbeatTimeout).
	HeartbeatInterval, HeartbeatTimeout time.Duration
}

// Environment is a pipeline environment to start workers for.
type Environment struct {
	ID    string
	Proto *pipepb.Environment
	// InProcess runs the workers of a LOOPBACK (external) environment in
	// this process (StartInProcess): only for pipelines whose code is
	// linked into this binary.
	InProcess bool
	// WorkerBinary returns the staged artifact of a role ("" if none):
	// a PROCESS environment runs the Go worker binary.
	WorkerBinary func(role string) string
}

// goWorkerBinary is the artifact role of the Go SDK's worker binary.
const goWorkerBinary = "beam:artifact:role:go_worker_binary:v1"

// Start starts worker id for env: in this process, through the
// environment's external worker pool (LOOPBACK), or as a process running
// its staged Go worker binary (PROCESS).
func (s *Server) Start(ctx context.Context, env Environment, id string, o WorkerOptions) (harness.Worker, error) {
	switch env.Proto.GetUrn() {
	case plan.URNEnvExternal:
		if env.InProcess {
			return StartInProcess(id), nil
		}
		ext := &pipepb.ExternalPayload{}
		if err := proto.Unmarshal(env.Proto.GetPayload(), ext); err != nil {
			return nil, fmt.Errorf("environment %q: decoding external payload: %w", env.ID, err)
		}
		return s.StartLoopback(ctx, ext.GetEndpoint().GetUrl(), id, o)
	case plan.URNEnvProcess:
		bin := ""
		if env.WorkerBinary != nil {
			bin = env.WorkerBinary(goWorkerBinary)
		}
		if bin == "" {
			return nil, fmt.Errorf("environment %q: no staged Go worker binary", env.ID)
		}
		if err := os.Chmod(bin, 0o755); err != nil {
			return nil, fmt.Errorf("environment %q: making worker binary executable: %w", env.ID, err)
		}
		return s.StartProcess(ctx, bin, id, o)
	default:
		return nil, fmt.Errorf("environment %q (%s) is not supported", env.ID, env.Proto.GetUrn())
	}
}

// StartLoopback asks the external worker pool at poolURL (the SDK's
// loopback server) to start harness id, and waits for it to connect.
func (s *Server) StartLoopback(ctx context.Context, poolURL, id string, o WorkerOptions) (*Worker, error) {
	w := newWorker(s, id, o.Options)
	w.retrievalToken, w.dependencies = o.RetrievalToken, o.Dependencies
	s.addWorker(w)
	conn, err := grpc.NewClient(poolURL, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		w.die(fmt.Errorf("dialing worker pool %s: %w", poolURL, err))
		return nil, w.goneErr
	}
	pool := fnpb.NewBeamFnExternalWorkerPoolClient(conn)
	ep := s.ApiDescriptor()
	resp, err := pool.StartWorker(ctx, &fnpb.StartWorkerRequest{
		WorkerId:          id,
		ControlEndpoint:   ep,
		LoggingEndpoint:   ep,
		ArtifactEndpoint:  ep,
		ProvisionEndpoint: ep,
	})
	if err == nil && resp.GetError() != "" {
		err = fmt.Errorf("%s", resp.GetError())
	}
	if err != nil {
		conn.Close()
		w.die(fmt.Errorf("starting loopback worker %s at %s: %w", id, poolURL, err))
		return nil, w.goneErr
	}
	w.stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = pool.StopWorker(sctx, &fnpb.StopWorkerRequest{WorkerId: id})
		conn.Close()
	}
	if err := connectOrStop(ctx, w); err != nil {
		return nil, err
	}
	w.startWatch(o)
	return w, nil
}

// StartProcess runs the Go worker binary as harness id and waits for it to
// connect. The process is killed by Worker.Stop, and its exit kills the worker.
func (s *Server) StartProcess(ctx context.Context, binary, id string, o WorkerOptions) (*Worker, error) {
	w := newWorker(s, id, o.Options)
	w.retrievalToken, w.dependencies = o.RetrievalToken, o.Dependencies
	s.addWorker(w)
	dir, err := os.MkdirTemp("", "weir-worker-")
	if err != nil {
		w.die(fmt.Errorf("creating worker dir: %w", err))
		return nil, w.goneErr
	}
	opts := o.Options
	if opts == nil {
		opts = &structpb.Struct{}
	}
	js, err := protojson.Marshal(opts)
	if err != nil {
		w.die(fmt.Errorf("encoding pipeline options for worker %s: %w", id, err))
		return nil, w.goneErr
	}
	optFile := filepath.Join(dir, "pipeline_options.json")
	if err := os.WriteFile(optFile, js, 0o600); err != nil {
		w.die(fmt.Errorf("writing pipeline options for worker %s: %w", id, err))
		return nil, w.goneErr
	}
	ep := s.Endpoint()
	cmd := exec.Command(binary, "--worker=true", "--id="+id,
		"--logging_endpoint="+ep, "--control_endpoint="+ep, "--semi_persist_dir="+dir)
	cmd.Env = append(os.Environ(), "PIPELINE_OPTIONS_FILE="+optFile)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		w.die(fmt.Errorf("starting worker binary %s: %w", binary, err))
		return nil, w.goneErr
	}
	exited := make(chan struct{})
	go func() { // owned by the worker: ends when the process exits.
		err := cmd.Wait()
		w.die(fmt.Errorf("worker %s process exited (%v): %w", id, err, harness.ErrWorkerGone))
		os.RemoveAll(dir)
		close(exited)
	}()
	w.stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	if err := connectOrStop(ctx, w); err != nil {
		return nil, err
	}
	w.startWatch(o)
	return w, nil
}

func connectOrStop(ctx context.Context, w *Worker) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := w.WaitConnected(cctx); err != nil {
		w.Stop()
		return fmt.Errorf("worker %s did not connect: %w", w.id, err)
	}
	return nil
}
