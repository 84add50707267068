package sdkharness

import (
	"context"
	"io"
	"log/slog"
	"sync"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/util/grpcx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Server serves the Fn API services for every worker of this process.
type Server struct {
	fnpb.UnimplementedBeamFnControlServer
	fnpb.UnimplementedBeamFnDataServer
	fnpb.UnimplementedBeamFnStateServer
	fnpb.UnimplementedBeamFnLoggingServer
	fnpb.UnimplementedProvisionServiceServer

	log *slog.Logger

	mu       sync.Mutex
	endpoint string
	workers  map[string]*Worker
}

// NewServer returns a Server with no workers. Call Register on a gRPC
// server and SetEndpoint once it listens.
func NewServer(log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{log: log, workers: map[string]*Worker{}}
}

// Register registers the Fn API services on g.
func (s *Server) Register(g *grpc.Server) {
	fnpb.RegisterBeamFnControlServer(g, s)
	fnpb.RegisterBeamFnDataServer(g, s)
	fnpb.RegisterBeamFnStateServer(g, s)
	fnpb.RegisterBeamFnLoggingServer(g, s)
	fnpb.RegisterProvisionServiceServer(g, s)
}

// SetEndpoint records the address harnesses must dial.
func (s *Server) SetEndpoint(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoint = addr
}

// Endpoint is the address harnesses dial.
func (s *Server) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endpoint
}

// ApiDescriptor is the descriptor of this server for data, state and timer ports.
func (s *Server) ApiDescriptor() *pipepb.ApiServiceDescriptor {
	return &pipepb.ApiServiceDescriptor{Url: s.Endpoint()}
}

func (s *Server) addWorker(w *Worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers[w.id] = w
}

func (s *Server) removeWorker(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.workers, id)
}

func (s *Server) worker(ctx context.Context) (*Worker, error) {
	id, err := grpcx.ReadWorkerID(ctx)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "fn api call without worker_id: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workers[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "unknown worker %q", id)
	}
	return w, nil
}

// Control serves a harness's control stream: weir sends instructions, the
// harness answers them.
func (s *Server) Control(stream fnpb.BeamFnControl_ControlServer) error {
	w, err := s.worker(stream.Context())
	if err != nil {
		return err
	}
	return w.serveControl(stream)
}

// GetProcessBundleDescriptor returns a descriptor registered with the worker
// that asks, or, if the call names no worker (Beam's TypeScript SDK sends
// no worker_id here), the one registered under that ID (foreign.go).
func (s *Server) GetProcessBundleDescriptor(ctx context.Context, req *fnpb.GetProcessBundleDescriptorRequest) (*fnpb.ProcessBundleDescriptor, error) {
	if _, err := grpcx.ReadWorkerID(ctx); err != nil {
		return s.descriptorByID(ctx, req.GetProcessBundleDescriptorId())
	}
	w, err := s.worker(ctx)
	if err != nil {
		return nil, err
	}
	d := w.descriptor(req.GetProcessBundleDescriptorId())
	if d == nil {
		return nil, status.Errorf(codes.NotFound, "unknown process bundle descriptor %q", req.GetProcessBundleDescriptorId())
	}
	return d, nil
}

// Data serves a harness's data stream.
func (s *Server) Data(stream fnpb.BeamFnData_DataServer) error {
	w, err := s.worker(stream.Context())
	if err != nil {
		return err
	}
	return w.serveData(stream)
}

// State serves a harness's state stream.
func (s *Server) State(stream fnpb.BeamFnState_StateServer) error {
	w, err := s.worker(stream.Context())
	if err != nil {
		return err
	}
	return w.serveState(stream)
}

// Logging receives harness logs and writes them with slog.
func (s *Server) Logging(stream fnpb.BeamFnLogging_LoggingServer) error {
	id, _ := grpcx.ReadWorkerID(stream.Context())
	for {
		list, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // the harness went away; nothing to report back.
		}
		for _, e := range list.GetLogEntries() {
			lvl := slog.LevelDebug
			switch sev := e.GetSeverity(); {
			case sev >= fnpb.LogEntry_Severity_ERROR:
				lvl = slog.LevelError
			case sev >= fnpb.LogEntry_Severity_WARN:
				lvl = slog.LevelWarn
			case sev >= fnpb.LogEntry_Severity_NOTICE:
				lvl = slog.LevelInfo
			}
			s.log.Log(stream.Context(), lvl, e.GetMessage(), "worker", id, "transform", e.GetTransformId(), "where", e.GetLogLocation())
		}
	}
}

// GetProvisionInfo tells a harness its endpoints and options.
func (s *Server) GetProvisionInfo(ctx context.Context, _ *fnpb.GetProvisionInfoRequest) (*fnpb.GetProvisionInfoResponse, error) {
	w, err := s.worker(ctx)
	if err != nil {
		return nil, err
	}
	ep := s.ApiDescriptor()
	opts := w.options
	if opts == nil {
		opts = &structpb.Struct{}
	}
	return &fnpb.GetProvisionInfoResponse{Info: &fnpb.ProvisionInfo{
		PipelineOptions:    opts,
		LoggingEndpoint:    ep,
		ControlEndpoint:    ep,
		ArtifactEndpoint:   ep,
		RetrievalToken:     w.retrievalToken,
		Dependencies:       w.dependencies,
		RunnerCapabilities: RunnerCapabilities,
	}}, nil
}

// RunnerCapabilities are the Fn API protocols weir supports.
var RunnerCapabilities = []string{
	// Full monitoring infos are wanted in every response, so short IDs are
	// not offered.
}
