package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/portability"
	"google.golang.org/protobuf/types/known/structpb"
)

// stopExec runs jobs until they stop with a "savepoint" that names its
// target and whether the job drained, then ends them.
type stopExec struct {
	ready   chan struct{}
	stopped chan struct{}
}

func (stopExec) Validate(*pipepb.Pipeline, *structpb.Struct) error { return nil }

func (x stopExec) Execute(ctx context.Context, j *portability.Job) error {
	j.OnStop(func(_ context.Context, req portability.SavepointRequest) (string, error) {
		defer close(x.stopped)
		return fmt.Sprintf("%s/savepoint-%s-drain=%v-%s", req.Target, j.Name, req.Drain, req.Type), nil
	})
	close(x.ready)
	select {
	case <-x.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestStopCommand: weir stop JOB --drain --target=URL (flags after the
// job, as Flink's CLI takes them) asks the job server to stop the job with
// a drained savepoint and prints its path; a job that is not running is
// refused with the server's reason.
func TestStopCommand(t *testing.T) {
	x := stopExec{ready: make(chan struct{}), stopped: make(chan struct{})}
	addr, job := startFakeJob(t, x, x.ready)
	ctx := t.Context()
	ep := "--endpoint=" + addr
	var out bytes.Buffer
	if err := stopCmd(ctx, &out, []string{ep, job, "--savepoint", "--drain", "--target=file:///sp", "--type=native"}); err != nil {
		t.Fatal(err)
	}
	if want := "file:///sp/savepoint-cards-drain=true-native\n"; out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	err := stopCmd(ctx, io.Discard, []string{ep, "nosuchjob"})
	if err == nil || !strings.Contains(err.Error(), "stopping nosuchjob with a savepoint") || !strings.Contains(err.Error(), "not found") {
		t.Errorf("an unknown job: %v", err)
	}
	if err := stopCmd(ctx, io.Discard, []string{ep}); err == nil || !strings.Contains(err.Error(), "want one JOB") {
		t.Errorf("no JOB: %v", err)
	}
}
