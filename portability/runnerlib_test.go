package portability

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal/runnerlib"
)

// beamPipeline builds a real Go SDK pipeline proto, as universal.Execute does.
func beamPipeline(t *testing.T) *pipepb.Pipeline {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	beam.Impulse(s)
	edges, _, err := p.Build()
	if err != nil {
		t.Fatalf("building pipeline: %v", err)
	}
	env, err := graphx.CreateEnvironment(context.Background(), graphx.URNEnvExternal, func(context.Context) string { return "localhost:1" })
	if err != nil {
		t.Fatalf("creating environment: %v", err)
	}
	pipe, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
	if err != nil {
		t.Fatalf("marshalling pipeline: %v", err)
	}
	return pipe
}

// TestRunnerlibExecute submits real Go SDK pipelines with runnerlib.Execute, which is what --runner=universal
// (and weir's embedded runner) does: Prepare, staging, Run, the message stream and GetJobMetrics.
func TestRunnerlibExecute(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // runnerlib leaves a loopback placeholder file there
	worker, workerData, _ := writeRandomFile(t, t.TempDir(), "worker", 3<<20)

	tests := []struct {
		name    string
		opts    runnerlib.JobOptions
		wantBin []byte // contents of the staged worker binary
		fail    error
	}{
		{name: "loopback", opts: runnerlib.JobOptions{Name: "loopback", Loopback: true}, wantBin: []byte{}},
		{name: "worker binary", opts: runnerlib.JobOptions{Name: "process", Worker: worker}, wantBin: workerData},
		{name: "failure", opts: runnerlib.JobOptions{Name: "failure", Loopback: true}, fail: errors.New("stage s1 failed: boom")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
				bin := j.ArtifactPath("go", graphx.URNArtifactGoWorkerRole)
				if bin == "" {
					return errors.New("no staged worker binary")
				}
				if b, err := os.ReadFile(bin); err != nil || !bytes.Equal(b, tc.wantBin) {
					return fmt.Errorf("staged worker binary: %d bytes (err %v), want %d", len(b), err, len(tc.wantBin))
				}
				j.UpdateMetrics([]*pipepb.MonitoringInfo{counterInfo(t, "Impulse", "count", 5)}, []*pipepb.MonitoringInfo{counterInfo(t, "Impulse", "count", 3)})
				return tc.fail
			}}
			e := startServer(t, exec, Options{})
			res, err := runnerlib.Execute(testCtx(t), beamPipeline(t), e.addr, &tc.opts, false)
			if tc.fail != nil {
				if err == nil || !strings.Contains(err.Error(), tc.fail.Error()) {
					t.Fatalf("runnerlib.Execute = %v, want an error containing %q", err, tc.fail)
				}
				return
			}
			if err != nil {
				t.Fatalf("runnerlib.Execute: %v", err)
			}
			j := e.srv.Job(res.JobID())
			if j == nil || j.State() != jobpb.JobState_DONE {
				t.Fatalf("job %q: %v, want DONE", res.JobID(), j)
			}
			if !strings.HasPrefix(j.ID, tc.opts.Name+"-") {
				t.Errorf("job id %q does not start with the job name", j.ID)
			}
			cs := res.Metrics().AllMetrics().Counters()
			if len(cs) != 1 || cs[0].Attempted != 5 || cs[0].Committed != 3 || cs[0].Key.Name != "count" {
				t.Errorf("counters = %+v, want count attempted 5, committed 3", cs)
			}
		})
	}
}
