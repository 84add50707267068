package portability

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeExec is an Executor that records its calls and runs a test-provided function.
type fakeExec struct {
	validateErr error
	run         func(ctx context.Context, j *Job) error // nil: return nil at once

	mu        sync.Mutex
	validated []*pipepb.Pipeline
	executed  []string // job IDs
}

func (f *fakeExec) Validate(p *pipepb.Pipeline, _ *structpb.Struct) error {
	f.mu.Lock()
	f.validated = append(f.validated, p)
	f.mu.Unlock()
	return f.validateErr
}

func (f *fakeExec) Execute(ctx context.Context, j *Job) error {
	f.mu.Lock()
	f.executed = append(f.executed, j.ID)
	f.mu.Unlock()
	if f.run == nil {
		return nil
	}
	return f.run(ctx, j)
}

func (f *fakeExec) calls() (validated, executed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.validated), len(f.executed)
}

// testEnv is a Server on a real gRPC server listening on 127.0.0.1 and a client connected to it.
type testEnv struct {
	srv    *Server
	addr   string
	cc     *grpc.ClientConn
	client jobpb.JobServiceClient
}

func startServer(t *testing.T, exec Executor, o Options) *testEnv {
	t.Helper()
	if o.Logger == nil {
		w := &testWriter{t: t}
		t.Cleanup(w.close) // registered first, so it runs after everything is stopped
		o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := NewServer(exec, o)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	srv.SetEndpoint(lis.Addr().String())
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := g.Serve(lis); err != nil {
			t.Errorf("grpc Serve: %v", err)
		}
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		g.Stop()
		<-served
	})
	return &testEnv{srv: srv, addr: lis.Addr().String(), cc: cc, client: jobpb.NewJobServiceClient(cc)}
}

// testWriter sends logs to t.Log until the test's cleanup closes it.
type testWriter struct {
	t      *testing.T
	mu     sync.Mutex
	closed bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testPipeline is a minimal pipeline with one environment "go" and the given dependencies.
func testPipeline(deps ...*pipepb.ArtifactInformation) *pipepb.Pipeline {
	return &pipepb.Pipeline{Components: &pipepb.Components{
		Environments: map[string]*pipepb.Environment{"go": {Urn: "beam:env:external:v1", Dependencies: deps}},
		Transforms:   map[string]*pipepb.PTransform{"e1": {UniqueName: "Impulse", Spec: &pipepb.FunctionSpec{Urn: "beam:transform:impulse:v1"}, EnvironmentId: "go"}},
	}, RootTransformIds: []string{"e1"}}
}

// prepare prepares p under name and returns the response.
func (e *testEnv) prepare(t *testing.T, name string, p *pipepb.Pipeline) *jobpb.PrepareJobResponse {
	t.Helper()
	resp, err := e.client.Prepare(testCtx(t), &jobpb.PrepareJobRequest{Pipeline: p, JobName: name, PipelineOptions: &structpb.Struct{}})
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return resp
}

// submit prepares and runs p without staging and returns the job ID.
func (e *testEnv) submit(t *testing.T, name string, p *pipepb.Pipeline) string {
	t.Helper()
	prep := e.prepare(t, name, p)
	run, err := e.client.Run(testCtx(t), &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId(), RetrievalToken: prep.GetStagingSessionToken()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return run.GetJobId()
}

// messages reads the job's message stream to its end.
func (e *testEnv) messages(t *testing.T, id string) []*jobpb.JobMessagesResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := e.client.GetMessageStream(ctx, &jobpb.JobMessagesRequest{JobId: id})
	if err != nil {
		t.Errorf("GetMessageStream: %v", err)
		return nil
	}
	var out []*jobpb.JobMessagesResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Errorf("GetMessageStream Recv after %d responses: %v", len(out), err) // may run in a goroutine
			return out
		}
		out = append(out, m)
	}
}

// states reads the job's state stream to its end.
func (e *testEnv) states(t *testing.T, stream jobpb.JobService_GetStateStreamClient) []jobpb.JobState_Enum {
	t.Helper()
	var out []jobpb.JobState_Enum
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("GetStateStream Recv after %v: %v", out, err)
		}
		if ev.GetTimestamp() == nil {
			t.Errorf("state event %v has no timestamp", ev.GetState())
		}
		out = append(out, ev.GetState())
	}
}

// waitState waits until the job reaches state s.
func (e *testEnv) waitState(t *testing.T, id string, s jobpb.JobState_Enum) {
	t.Helper()
	stream, err := e.client.GetStateStream(testCtx(t), &jobpb.GetJobStateRequest{JobId: id})
	if err != nil {
		t.Fatalf("GetStateStream: %v", err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("waiting for state %v: %v", s, err)
		}
		if ev.GetState() == s {
			return
		}
	}
}

// describe renders a message stream compactly: states by name, messages as "IMPORTANCE:text".
func describe(ms []*jobpb.JobMessagesResponse) []string {
	var out []string
	for _, m := range ms {
		if se := m.GetStateResponse(); se != nil {
			out = append(out, se.GetState().String())
		} else {
			mr := m.GetMessageResponse()
			out = append(out, mr.GetImportance().String()+":"+mr.GetMessageText())
		}
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code codes.Code, substr string) {
	t.Helper()
	st, _ := status.FromError(err)
	if err == nil || st.Code() != code {
		t.Errorf("%s: got error %v, want code %v", what, err, code)
		return
	}
	if !strings.Contains(st.Message(), substr) {
		t.Errorf("%s: message %q does not contain %q", what, st.Message(), substr)
	}
}
