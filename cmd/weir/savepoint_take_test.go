package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/portability"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
)

// savepointExec runs jobs until they are cancelled, taking "savepoints"
// that only name a directory in their target.
type savepointExec struct{ ready chan struct{} }

func (savepointExec) Validate(*pipepb.Pipeline, *structpb.Struct) error { return nil }

func (x savepointExec) Execute(ctx context.Context, j *portability.Job) error {
	j.OnSavepoint(func(_ context.Context, req portability.SavepointRequest) (string, error) {
		return req.Target + "/savepoint-" + j.Name + "-1-" + req.Type, nil
	})
	close(x.ready)
	<-ctx.Done()
	return ctx.Err()
}

func TestSavepointTake(t *testing.T) {
	x := savepointExec{ready: make(chan struct{})}
	addr, job := startFakeJob(t, x, x.ready)
	ctx := t.Context()
	ep := "--endpoint=" + addr
	var out bytes.Buffer
	if err := savepointTake(ctx, &out, []string{ep, "--target=file:///sp", job}); err != nil {
		t.Fatal(err)
	}
	if want := "file:///sp/savepoint-cards-1-canonical\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	err := savepointTake(ctx, io.Discard, []string{ep, "nosuchjob"})
	if err == nil || !strings.Contains(err.Error(), "taking a savepoint of nosuchjob") || !strings.Contains(err.Error(), `job "nosuchjob" not found`) {
		t.Errorf("an unknown job: %v", err)
	}
	if err := savepointTake(ctx, io.Discard, []string{ep}); err == nil || !strings.Contains(err.Error(), "want one JOB") {
		t.Errorf("no JOB: %v", err)
	}
}

// startFakeJob serves a job server with executor x on a port of its own
// and submits a job, which has started once ready is closed; it returns
// the server's address and the job's ID.
func startFakeJob(t *testing.T, x portability.Executor, ready <-chan struct{}) (string, string) {
	t.Helper()
	srv, err := portability.NewServer(x, portability.Options{StagingDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	srv.SetEndpoint(lis.Addr().String())
	served := make(chan error, 1)
	go func() { served <- g.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		g.Stop()
		if err := <-served; err != nil {
			t.Errorf("serving: %v", err)
		}
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	jobs := jobpb.NewJobServiceClient(conn)
	ctx := t.Context()
	prep, err := jobs.Prepare(ctx, &jobpb.PrepareJobRequest{JobName: "cards", Pipeline: &pipepb.Pipeline{}, PipelineOptions: &structpb.Struct{}})
	if err != nil {
		t.Fatal(err)
	}
	run, err := jobs.Run(ctx, &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId()})
	if err != nil {
		t.Fatal(err)
	}
	<-ready
	return lis.Addr().String(), run.GetJobId()
}
