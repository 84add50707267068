package portability

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/metricsx"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal/runnerlib"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

func counterInfo(t *testing.T, transform, name string, v int64) *pipepb.MonitoringInfo {
	t.Helper()
	payload, err := metricsx.Int64Counter(v)
	if err != nil {
		t.Fatalf("encoding counter: %v", err)
	}
	return &pipepb.MonitoringInfo{
		Urn:     metricsx.UrnToString(metricsx.UrnUserSumInt64),
		Type:    "beam:metrics:sum_int64:v1",
		Labels:  map[string]string{"PTRANSFORM": transform, "NAMESPACE": "test", "NAME": name},
		Payload: payload,
	}
}

func TestJobDoneWithLiveAndLateSubscribers(t *testing.T) {
	release := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		if got := j.State(); got != jobpb.JobState_RUNNING {
			t.Errorf("state in Execute = %v, want RUNNING", got)
		}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, "hello")
		seven := []*pipepb.MonitoringInfo{counterInfo(t, "Impulse", "elements", 7)}
		j.UpdateMetrics(seven, seven)
		return nil
	}}
	e := startServer(t, exec, Options{})
	ctx := testCtx(t)
	p := testPipeline()
	id := e.submit(t, "my job", p)
	if id == "" {
		t.Fatal("Run returned an empty job id")
	}

	// Subscribe while the job runs, then let it finish.
	live := make(chan []*jobpb.JobMessagesResponse, 1)
	go func() { live <- e.messages(t, id) }()
	stateStream, err := e.client.GetStateStream(ctx, &jobpb.GetJobStateRequest{JobId: id})
	if err != nil {
		t.Fatalf("GetStateStream: %v", err)
	}
	e.waitState(t, id, jobpb.JobState_RUNNING)
	close(release)

	want := []string{"STOPPED", "STARTING", "RUNNING", "JOB_MESSAGE_BASIC:hello", "DONE"}
	if got := describe(<-live); !slices.Equal(got, want) {
		t.Errorf("live message stream = %v, want %v", got, want)
	}
	states := e.states(t, stateStream)
	if len(states) == 0 || states[len(states)-1] != jobpb.JobState_DONE {
		t.Errorf("live state stream = %v, want it to end with DONE", states)
	}
	// A late subscriber gets the whole history; a late state subscriber gets the terminal state only.
	if got := describe(e.messages(t, id)); !slices.Equal(got, want) {
		t.Errorf("late message stream = %v, want %v", got, want)
	}
	late, err := e.client.GetStateStream(ctx, &jobpb.GetJobStateRequest{JobId: id})
	if err != nil {
		t.Fatalf("GetStateStream: %v", err)
	}
	if got := e.states(t, late); !slices.Equal(got, []jobpb.JobState_Enum{jobpb.JobState_DONE}) {
		t.Errorf("late state stream = %v, want [DONE]", got)
	}

	if v, x := exec.calls(); v != 1 || x != 1 {
		t.Errorf("executor calls: Validate %d, Execute %d; want 1 and 1", v, x)
	}
	if exec.executed[0] != id {
		t.Errorf("Execute got job %q, want %q", exec.executed[0], id)
	}
	st, err := e.client.GetState(ctx, &jobpb.GetJobStateRequest{JobId: id})
	if err != nil || st.GetState() != jobpb.JobState_DONE {
		t.Errorf("GetState = %v, %v; want DONE", st, err)
	}
	jobs, err := e.client.GetJobs(ctx, &jobpb.GetJobsRequest{})
	if err != nil || len(jobs.GetJobInfo()) != 1 || jobs.GetJobInfo()[0].GetJobId() != id ||
		jobs.GetJobInfo()[0].GetJobName() != "my job" || jobs.GetJobInfo()[0].GetState() != jobpb.JobState_DONE {
		t.Errorf("GetJobs = %v, %v; want one DONE job %q named %q", jobs, err, id, "my job")
	}
	pipe, err := e.client.GetPipeline(ctx, &jobpb.GetJobPipelineRequest{JobId: id})
	if err != nil || !proto.Equal(pipe.GetPipeline(), p) {
		t.Errorf("GetPipeline = %v, %v; want the submitted pipeline", pipe, err)
	}
	m, err := e.client.GetJobMetrics(ctx, &jobpb.GetJobMetricsRequest{JobId: id})
	if err != nil {
		t.Fatalf("GetJobMetrics after DONE: %v", err)
	}
	if len(m.GetMetrics().GetAttempted()) != 1 || len(m.GetMetrics().GetCommitted()) != 1 {
		t.Errorf("GetJobMetrics = %v, want the one counter as attempted and committed", m)
	}
	res := metricsx.FromMonitoringInfos(p, m.GetMetrics().GetAttempted(), m.GetMetrics().GetCommitted())
	if cs := res.AllMetrics().Counters(); len(cs) != 1 || cs[0].Committed != 7 {
		t.Errorf("counters = %+v, want one with 7", cs)
	}
	if _, err := e.client.DescribePipelineOptions(ctx, &jobpb.DescribePipelineOptionsRequest{}); err != nil {
		t.Errorf("DescribePipelineOptions: %v", err)
	}
	if jobs := e.srv.Jobs(); len(jobs) != 1 || jobs[0] != e.srv.Job(id) || jobs[0].State() != jobpb.JobState_DONE {
		t.Errorf("Server.Jobs() = %v, want the one DONE job", jobs)
	}
}

// TestJobMetricsAttemptedAndCommitted: GetJobMetrics returns the attempted
// and committed metrics the executor reported, each as it was (a restore
// makes attempted count replayed bundles that committed counts once), and
// an empty result before any.
func TestJobMetricsAttemptedAndCommitted(t *testing.T) {
	reported, release := make(chan struct{}), make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		<-reported // the test has read the metrics before any report
		j.UpdateMetrics(
			[]*pipepb.MonitoringInfo{counterInfo(t, "ParDo", "n", 130), counterInfo(t, "ParDo", "retried", 2)},
			[]*pipepb.MonitoringInfo{counterInfo(t, "ParDo", "n", 100)})
		reported <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		j.UpdateMetrics(
			[]*pipepb.MonitoringInfo{counterInfo(t, "ParDo", "n", 160), counterInfo(t, "ParDo", "retried", 2)},
			[]*pipepb.MonitoringInfo{counterInfo(t, "ParDo", "n", 120), counterInfo(t, "ParDo", "retried", 2)})
		return nil
	}}
	e := startServer(t, exec, Options{})
	ctx := testCtx(t)
	p := testPipeline()
	id := e.submit(t, "metrics", p)
	counters := func() map[string][2]int64 {
		t.Helper()
		m, err := e.client.GetJobMetrics(ctx, &jobpb.GetJobMetricsRequest{JobId: id})
		if err != nil {
			t.Fatalf("GetJobMetrics: %v", err)
		}
		if m.GetMetrics() == nil {
			t.Fatal("GetJobMetrics returned no MetricResults")
		}
		out := map[string][2]int64{}
		for _, c := range metricsx.FromMonitoringInfos(p, m.GetMetrics().GetAttempted(), m.GetMetrics().GetCommitted()).AllMetrics().Counters() {
			out[c.Key.Name] = [2]int64{c.Attempted, c.Committed}
		}
		return out
	}
	e.waitState(t, id, jobpb.JobState_RUNNING)
	if got := counters(); len(got) != 0 {
		t.Errorf("metrics before any report = %v, want none", got)
	}
	reported <- struct{}{}
	<-reported
	want := map[string][2]int64{"n": {130, 100}, "retried": {2, 0}}
	if got := counters(); !maps.Equal(got, want) {
		t.Errorf("running: counters (attempted, committed) = %v, want %v", got, want)
	}
	close(release)
	e.waitState(t, id, jobpb.JobState_DONE)
	want = map[string][2]int64{"n": {160, 120}, "retried": {2, 2}}
	if got := counters(); !maps.Equal(got, want) {
		t.Errorf("done: counters (attempted, committed) = %v, want %v", got, want)
	}
}

func TestJobFailedSendsErrorMessage(t *testing.T) {
	exec := &fakeExec{run: func(context.Context, *Job) error {
		return errors.New("transform \"Sum\" (beam:transform:foo:v1): boom")
	}}
	e := startServer(t, exec, Options{})
	id := e.submit(t, "failing", testPipeline())

	want := []string{"STOPPED", "STARTING", "RUNNING", "JOB_MESSAGE_ERROR:transform \"Sum\" (beam:transform:foo:v1): boom", "FAILED"}
	if got := describe(e.messages(t, id)); !slices.Equal(got, want) {
		t.Errorf("message stream = %v, want %v", got, want)
	}
	// Beam's client reports the error message as the job's failure.
	err := runnerlib.WaitForCompletion(testCtx(t), e.client, id)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("runnerlib.WaitForCompletion = %v, want the executor's error", err)
	}
	if _, err := e.client.GetJobMetrics(testCtx(t), &jobpb.GetJobMetricsRequest{JobId: id}); err != nil {
		t.Errorf("GetJobMetrics after FAILED: %v", err)
	}
}

func TestExecutorPanicFailsJob(t *testing.T) {
	exec := &fakeExec{run: func(context.Context, *Job) error { panic("kaput") }}
	e := startServer(t, exec, Options{})
	id := e.submit(t, "panicky", testPipeline())
	got := describe(e.messages(t, id))
	if len(got) < 2 || got[len(got)-1] != "FAILED" || !strings.Contains(got[len(got)-2], "kaput") {
		t.Errorf("message stream = %v, want an error naming the panic, then FAILED", got)
	}
}

func TestCancel(t *testing.T) {
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		<-ctx.Done()
		return ctx.Err()
	}}
	e := startServer(t, exec, Options{})
	ctx := testCtx(t)
	id := e.submit(t, "cancelled", testPipeline())
	e.waitState(t, id, jobpb.JobState_RUNNING)
	stream, err := e.client.GetStateStream(ctx, &jobpb.GetJobStateRequest{JobId: id})
	if err != nil {
		t.Fatalf("GetStateStream: %v", err)
	}
	if first, err := stream.Recv(); err != nil || first.GetState() != jobpb.JobState_RUNNING {
		t.Fatalf("first state = %v, %v; want RUNNING", first, err)
	}
	resp, err := e.client.Cancel(ctx, &jobpb.CancelJobRequest{JobId: id})
	if err != nil || resp.GetState() != jobpb.JobState_CANCELLING {
		t.Fatalf("Cancel = %v, %v; want CANCELLING", resp, err)
	}
	want := []jobpb.JobState_Enum{jobpb.JobState_CANCELLING, jobpb.JobState_CANCELLED}
	if got := e.states(t, stream); !slices.Equal(got, want) {
		t.Errorf("state stream = %v, want %v", got, want)
	}
	wantMsgs := []string{"STOPPED", "STARTING", "RUNNING", "CANCELLING", "CANCELLED"}
	if got := describe(e.messages(t, id)); !slices.Equal(got, wantMsgs) {
		t.Errorf("message stream = %v, want %v", got, wantMsgs)
	}
	// Cancelling a finished job changes nothing.
	resp, err = e.client.Cancel(ctx, &jobpb.CancelJobRequest{JobId: id})
	if err != nil || resp.GetState() != jobpb.JobState_CANCELLED {
		t.Errorf("second Cancel = %v, %v; want CANCELLED", resp, err)
	}
	if err := runnerlib.WaitForCompletion(ctx, e.client, id); err != nil {
		t.Errorf("runnerlib.WaitForCompletion on a cancelled job: %v", err)
	}
}

func TestValidateErrorIsInvalidArgument(t *testing.T) {
	msg := `transform "Weird" (beam:transform:weird:v1) is not supported`
	exec := &fakeExec{validateErr: errors.New(msg)}
	e := startServer(t, exec, Options{})
	_, err := e.client.Prepare(testCtx(t), &jobpb.PrepareJobRequest{Pipeline: testPipeline(), JobName: "bad"})
	wantCode(t, "Prepare", err, codes.InvalidArgument, msg)
	if v, x := exec.calls(); v != 1 || x != 0 {
		t.Errorf("executor calls: Validate %d, Execute %d; want 1 and 0", v, x)
	}
	_, err = e.client.Prepare(testCtx(t), &jobpb.PrepareJobRequest{JobName: "nopipeline"})
	wantCode(t, "Prepare without pipeline", err, codes.InvalidArgument, "no pipeline")
}

func TestUnknownIDsAreNotFound(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	const id = "no-such-job"
	_, err := e.client.GetState(ctx, &jobpb.GetJobStateRequest{JobId: id})
	wantCode(t, "GetState", err, codes.NotFound, id)
	_, err = e.client.GetPipeline(ctx, &jobpb.GetJobPipelineRequest{JobId: id})
	wantCode(t, "GetPipeline", err, codes.NotFound, id)
	_, err = e.client.Cancel(ctx, &jobpb.CancelJobRequest{JobId: id})
	wantCode(t, "Cancel", err, codes.NotFound, id)
	_, err = e.client.GetJobMetrics(ctx, &jobpb.GetJobMetricsRequest{JobId: id})
	wantCode(t, "GetJobMetrics", err, codes.NotFound, id)
	_, err = e.client.Drain(ctx, &jobpb.DrainJobRequest{JobId: id})
	wantCode(t, "Drain", err, codes.NotFound, id)
	_, err = e.client.Run(ctx, &jobpb.RunJobRequest{PreparationId: id})
	wantCode(t, "Run", err, codes.NotFound, id)
	ss, err := e.client.GetStateStream(ctx, &jobpb.GetJobStateRequest{JobId: id})
	if err == nil {
		_, err = ss.Recv()
	}
	wantCode(t, "GetStateStream", err, codes.NotFound, id)
	ms, err := e.client.GetMessageStream(ctx, &jobpb.JobMessagesRequest{JobId: id})
	if err == nil {
		_, err = ms.Recv()
	}
	wantCode(t, "GetMessageStream", err, codes.NotFound, id)
}

func TestDrain(t *testing.T) {
	ready := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		drained := make(chan struct{})
		j.OnDrain(func() { close(drained) })
		close(ready)
		select {
		case <-drained:
			return nil // a drained job finishes its work and ends DONE
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	e := startServer(t, exec, Options{})
	id := e.submit(t, "drain", testPipeline())
	<-ready
	resp, err := e.client.Drain(testCtx(t), &jobpb.DrainJobRequest{JobId: id})
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if resp.GetState() != jobpb.JobState_DRAINING {
		t.Errorf("Drain returned state %v, want DRAINING", resp.GetState())
	}
	e.waitState(t, id, jobpb.JobState_DONE)
}

func TestDrainWithoutDrainerIsRefused(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}}
	e := startServer(t, exec, Options{})
	id := e.submit(t, "nodrain", testPipeline())
	_, err := e.client.Drain(testCtx(t), &jobpb.DrainJobRequest{JobId: id})
	wantCode(t, "Drain", err, codes.FailedPrecondition, "cannot be drained")
}

func TestRunTwiceIsNotFound(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	prep := e.prepare(t, "twice", testPipeline())
	req := &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId()}
	if _, err := e.client.Run(testCtx(t), req); err != nil {
		t.Fatalf("first Run: %v", err)
	}
	_, err := e.client.Run(testCtx(t), req)
	wantCode(t, "second Run", err, codes.NotFound, prep.GetPreparationId())
}

func TestJobIDsAreUnique(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	seen := map[string]bool{}
	for range 5 {
		id := e.submit(t, "same/name", testPipeline())
		if seen[id] {
			t.Fatalf("job id %q returned twice", id)
		}
		seen[id] = true
		if e.srv.Job(id) == nil {
			t.Errorf("Server.Job(%q) = nil", id)
		}
	}
}

func TestStopCancelsRunningJobsAndRemovesStaging(t *testing.T) {
	started := make(chan struct{})
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	e := startServer(t, exec, Options{})
	id := e.submit(t, "stopped", testPipeline())
	<-started
	dir := e.srv.stagingDir
	e.srv.Stop()
	if got := e.srv.Job(id).State(); got != jobpb.JobState_CANCELLED {
		t.Errorf("state after Stop = %v, want CANCELLED", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("staging dir %s after Stop: %v, want it removed", dir, err)
	}
	_, err := e.client.Prepare(testCtx(t), &jobpb.PrepareJobRequest{Pipeline: testPipeline(), JobName: "late"})
	wantCode(t, "Prepare after Stop", err, codes.Unavailable, "stopped")
}

func TestSetStateRules(t *testing.T) {
	j := newJob("j", "j", testPipeline(), nil, nil, "", slog.New(slog.DiscardHandler))
	j.cancel = func() {}
	j.SetState(jobpb.JobState_RUNNING)
	if got := j.requestCancel(); got != jobpb.JobState_CANCELLING {
		t.Fatalf("requestCancel = %v, want CANCELLING", got)
	}
	j.SetState(jobpb.JobState_RUNNING) // ignored while cancelling
	if got := j.State(); got != jobpb.JobState_CANCELLING {
		t.Errorf("state = %v, want CANCELLING", got)
	}
	j.SetState(jobpb.JobState_CANCELLED)
	j.SetState(jobpb.JobState_RUNNING) // ignored once terminal
	if got := j.State(); got != jobpb.JobState_CANCELLED {
		t.Errorf("state = %v, want CANCELLED", got)
	}
}

// TestMessageInvalidUTF8: a job message quoting bytes that are not UTF-8
// (a user's timer tag in an error) still marshals: the bad bytes are
// replaced instead of breaking the message stream.
func TestMessageInvalidUTF8(t *testing.T) {
	j := newJob("j", "n", nil, nil, nil, t.TempDir(), slog.New(slog.DiscardHandler))
	j.Message(jobpb.JobMessage_JOB_MESSAGE_ERROR, "unexpected timer {Tag:\xff\xfe}")
	j.mu.Lock()
	events := j.events
	j.mu.Unlock()
	for _, e := range events {
		if _, err := proto.Marshal(e); err != nil {
			t.Fatalf("marshalling %v: %v", e, err)
		}
	}
}
