package portability

import (
	"context"
	"errors"
	"sync"
	"testing"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
)

// savepointExec runs jobs until they are cancelled; each registers a
// savepoint hook that records its targets ("" defaults to file:///default,
// "fail" fails).
type savepointExec struct {
	fakeExec
	ready chan struct{} // closed once the hook is registered

	mu      sync.Mutex
	targets []string
}

func newSavepointExec() *savepointExec {
	x := &savepointExec{ready: make(chan struct{})}
	x.run = func(ctx context.Context, j *Job) error {
		j.OnSavepoint(func(_ context.Context, req SavepointRequest) (string, error) {
			target := req.Target
			x.mu.Lock()
			x.targets = append(x.targets, target)
			x.mu.Unlock()
			switch target {
			case "fail":
				return "", errors.New("the engine says no")
			case "":
				target = "file:///default"
			}
			return target + "/savepoint-" + j.Name + "-1", nil
		})
		close(x.ready)
		<-ctx.Done()
		return ctx.Err()
	}
	return x
}

func TestSavepointTake(t *testing.T) {
	x := newSavepointExec()
	e := startServer(t, x, Options{})
	id := e.submit(t, "sp", testPipeline())
	<-x.ready
	ctx := testCtx(t)

	path, err := TakeSavepoint(ctx, e.cc, id, "file:///sps")
	if err != nil || path != "file:///sps/savepoint-sp-1" {
		t.Errorf("TakeSavepoint with a target = %q, %v; want file:///sps/savepoint-sp-1", path, err)
	}
	// No target: the hook gets "" and applies the job's default.
	path, err = TakeSavepoint(ctx, e.cc, id, "")
	if err != nil || path != "file:///default/savepoint-sp-1" {
		t.Errorf("TakeSavepoint without a target = %q, %v; want file:///default/savepoint-sp-1", path, err)
	}
	_, err = TakeSavepoint(ctx, e.cc, id, "fail")
	wantCode(t, "TakeSavepoint failing", err, codes.Internal, "the engine says no")
	x.mu.Lock()
	if got := x.targets; len(got) != 3 || got[0] != "file:///sps" || got[1] != "" || got[2] != "fail" {
		t.Errorf("the hook got targets %q, want [file:///sps \"\" fail]", got)
	}
	x.mu.Unlock()

	_, err = TakeSavepointWith(ctx, e.cc, id, SavepointRequest{Type: "sstables"})
	wantCode(t, "TakeSavepoint of an unknown type", err, codes.InvalidArgument, `unknown savepoint format "sstables"`)

	_, err = TakeSavepoint(ctx, e.cc, "nosuchjob", "")
	wantCode(t, "TakeSavepoint of an unknown job", err, codes.NotFound, `job "nosuchjob" not found`)
	_, err = TakeSavepoint(ctx, e.cc, "", "")
	wantCode(t, "TakeSavepoint without a job", err, codes.InvalidArgument, "no job_id")
	bad := &structpb.Struct{Fields: map[string]*structpb.Value{"job_id": structpb.NewStringValue(id), "targte": structpb.NewStringValue("x")}}
	err = e.cc.Invoke(ctx, takeMethod, bad, new(structpb.Struct))
	wantCode(t, "Take with a misspelt field", err, codes.InvalidArgument, `unknown field "targte"`)
	bad = &structpb.Struct{Fields: map[string]*structpb.Value{"job_id": structpb.NewNumberValue(1)}}
	err = e.cc.Invoke(ctx, takeMethod, bad, new(structpb.Struct))
	wantCode(t, "Take with a number for job_id", err, codes.InvalidArgument, `field "job_id" is not a string`)
}

func TestSavepointRefused(t *testing.T) {
	running := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		if j.Name == "done" {
			j.OnSavepoint(func(context.Context, SavepointRequest) (string, error) { return "unreachable", nil })
			return nil
		}
		close(running) // "nohook": runs without a savepoint hook
		<-ctx.Done()
		return ctx.Err()
	}}
	e := startServer(t, exec, Options{})
	ctx := testCtx(t)

	done := e.submit(t, "done", testPipeline())
	e.waitState(t, done, jobpb.JobState_DONE)
	_, err := TakeSavepoint(ctx, e.cc, done, "file:///sps")
	wantCode(t, "TakeSavepoint of a finished job", err, codes.FailedPrecondition, "job "+done+" cannot take a savepoint (state DONE)")

	nohook := e.submit(t, "nohook", testPipeline())
	<-running
	_, err = TakeSavepoint(ctx, e.cc, nohook, "file:///sps")
	wantCode(t, "TakeSavepoint of a job without a hook", err, codes.FailedPrecondition, "job "+nohook+" cannot take a savepoint (state RUNNING)")
}
