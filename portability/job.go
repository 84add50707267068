package portability

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Executor runs jobs. The server calls Validate from Prepare and Execute from Run.
type Executor interface {
	// Validate returns an error naming what weir cannot run (transform unique name and URN, requirement,
	// coder…). Prepare returns it to the client as codes.InvalidArgument with that message.
	Validate(p *pipepb.Pipeline, opts *structpb.Struct) error
	// Execute runs the job until it ends or ctx is cancelled (Cancel). A nil return means DONE; a non-nil
	// error FAILED (its message is sent as a JOB_MESSAGE_ERROR message and kept); ctx cancelled → CANCELLED.
	Execute(ctx context.Context, job *Job) error
}

// Job is a job that was run. Its exported fields are set when it is created and must not be changed.
type Job struct {
	ID, Name string
	// Pipeline is the submitted pipeline with the environments' dependencies rewritten to the staged files.
	Pipeline *pipepb.Pipeline
	Options  *structpb.Struct

	staged map[string][]stagedArtifact // environment ID → its staged dependencies; immutable
	dir    string                      // this job's staging directory, "" if nothing was staged
	log    *slog.Logger
	cancel context.CancelFunc // cancels the context Execute runs with

	mu      sync.Mutex
	state   jobpb.JobState_Enum
	events  []*jobpb.JobMessagesResponse // every state change and message, in order; never modified
	changed chan struct{}                // closed and replaced whenever events grows
	metrics *jobpb.MetricResults
	nextMsg int
	drain   func() // set by the executor; nil: the job cannot be drained
	// savepoint is set by the executor; nil: the job cannot take savepoints.
	savepoint func(ctx context.Context, req SavepointRequest) (string, error)
	// stop is set by the executor; nil: the job cannot stop with a savepoint.
	stop func(ctx context.Context, req SavepointRequest) (string, error)
}

// OnDrain registers how to drain the job: stop reading sources, let the
// watermark reach the end, fire every timer, and finish as DONE.
func (j *Job) OnDrain(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.drain = f
}

// requestDrain moves a running job to DRAINING and calls its drain
// function. It returns the state after the request.
func (j *Job) requestDrain() (jobpb.JobState_Enum, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if isTerminal(j.state) || j.state == jobpb.JobState_DRAINING {
		return j.state, nil
	}
	if j.drain == nil {
		return j.state, fmt.Errorf("job %s cannot be drained yet (state %v)", j.ID, j.state)
	}
	if j.setStateLocked(jobpb.JobState_DRAINING) {
		j.log.Info("draining job")
		j.drain()
	}
	return j.state, nil
}

// OnSavepoint registers how the job takes a savepoint into req.Target (a
// storage URL; "" means the job's own default) of type req.Type and
// returns the savepoint's path once it is complete. The server calls f
// only while the job is RUNNING, without holding the job's lock: f may
// take long, and calls may overlap.
func (j *Job) OnSavepoint(f func(ctx context.Context, req SavepointRequest) (string, error)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.savepoint = f
}

// takeSavepoint asks a running job for a savepoint as req says. A job that
// is not RUNNING or has no savepoint function is refused with an error
// wrapping errCannotSavepoint.
func (j *Job) takeSavepoint(ctx context.Context, req SavepointRequest) (string, error) {
	j.mu.Lock()
	f, st := j.savepoint, j.state
	j.mu.Unlock()
	if st != jobpb.JobState_RUNNING || f == nil {
		return "", fmt.Errorf("job %s %w (state %v)", j.ID, errCannotSavepoint, st)
	}
	j.log.Info("taking a savepoint", slog.String("target", req.Target), slog.String("type", req.Type))
	path, err := f(ctx, req)
	if err != nil {
		j.log.Warn("savepoint failed", slog.Any("error", err))
		return "", fmt.Errorf("savepoint of job %s: %w", j.ID, err)
	}
	j.log.Info("savepoint taken", slog.String("path", path))
	j.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, "savepoint taken: "+path)
	return path, nil
}

// OnStop registers how the job stops with a savepoint into req.Target (a
// storage URL; "" means the job's own default) of type req.Type, after
// draining if req.Drain is set; f returns the savepoint's path once it is complete, and the job
// then ends DONE. The server calls f only while the job is RUNNING,
// without holding the job's lock.
func (j *Job) OnStop(f func(ctx context.Context, req SavepointRequest) (string, error)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stop = f
}

// StopWithSavepoint asks a running job to stop with a savepoint as req
// says (into req.Target, draining first if req.Drain is set). A job that
// is not RUNNING or cannot stop so is refused with an error wrapping
// errCannotSavepoint.
func (j *Job) StopWithSavepoint(ctx context.Context, req SavepointRequest) (string, error) {
	j.mu.Lock()
	f, st := j.stop, j.state
	if st == jobpb.JobState_RUNNING && f != nil && req.Drain {
		j.setStateLocked(jobpb.JobState_DRAINING)
	}
	j.mu.Unlock()
	if st != jobpb.JobState_RUNNING || f == nil {
		return "", fmt.Errorf("job %s %w (state %v)", j.ID, errCannotSavepoint, st)
	}
	j.log.Info("stopping with a savepoint", slog.String("target", req.Target), slog.String("type", req.Type), slog.Bool("drain", req.Drain))
	path, err := f(ctx, req)
	if err != nil {
		j.log.Warn("stop with savepoint failed", slog.Any("error", err))
		return "", fmt.Errorf("stop of job %s with a savepoint: %w", j.ID, err)
	}
	j.log.Info("stopped with savepoint", slog.String("path", path))
	j.Message(jobpb.JobMessage_JOB_MESSAGE_BASIC, "stopped with savepoint: "+path)
	return path, nil
}

// stagedArtifact is a dependency of an environment written to a local file.
type stagedArtifact struct {
	role, path string
}

func newJob(id, name string, p *pipepb.Pipeline, opts *structpb.Struct, staged map[string][]stagedArtifact, dir string, log *slog.Logger) *Job {
	j := &Job{
		ID: id, Name: name, Pipeline: p, Options: opts,
		staged: staged, dir: dir,
		log:     log.With(slog.String("job", id)),
		changed: make(chan struct{}),
	}
	j.appendLocked(stateEvent(jobpb.JobState_STOPPED))
	return j
}

// SetState moves the job to state s. The server sets STOPPED→STARTING→RUNNING and the terminal state
// itself; an executor may set others (for example DRAINING). Once the job is terminal its state no longer
// changes, and while it is CANCELLING only a terminal state is taken.
func (j *Job) SetState(s jobpb.JobState_Enum) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.setStateLocked(s)
}

// setStateLocked applies the transition rules of SetState and reports whether the state changed.
func (j *Job) setStateLocked(s jobpb.JobState_Enum) bool {
	switch {
	case s == j.state, isTerminal(j.state):
		return false
	case j.state == jobpb.JobState_CANCELLING && !isTerminal(s):
		return false
	}
	j.log.Debug("job state", slog.String("from", j.state.String()), slog.String("to", s.String()))
	j.appendLocked(stateEvent(s))
	return true
}

// State returns the job's current state.
func (j *Job) State() jobpb.JobState_Enum {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.state
}

// Message appends a message to the job's message stream. Text that is
// not valid UTF-8 (an error quoting a user's bytes) has the bad bytes
// replaced: a protobuf string must be UTF-8, and a message that cannot be
// marshalled would break the client's stream instead of reporting the
// failure.
func (j *Job) Message(importance jobpb.JobMessage_MessageImportance, text string) {
	text = strings.ToValidUTF8(text, "\uFFFD")
	j.mu.Lock()
	defer j.mu.Unlock()
	j.nextMsg++
	j.appendLocked(&jobpb.JobMessagesResponse{Response: &jobpb.JobMessagesResponse_MessageResponse{
		MessageResponse: &jobpb.JobMessage{
			MessageId:   j.ID + "-msg-" + strconv.Itoa(j.nextMsg),
			Time:        time.Now().UTC().Format(time.RFC3339Nano),
			Importance:  importance,
			MessageText: text,
		},
	}})
}

// UpdateMetrics replaces the job's current metrics, which GetJobMetrics returns: attempted counts every
// successful bundle attempt, including bundles run again after a restore; committed counts only bundles
// whose effects are final (in a completed checkpoint, or in the finished job), each once. The job keeps
// both slices: do not modify them afterwards.
func (j *Job) UpdateMetrics(attempted, committed []*pipepb.MonitoringInfo) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.metrics = &jobpb.MetricResults{Attempted: attempted, Committed: committed}
}

func (j *Job) currentMetrics() (attempted, committed []*pipepb.MonitoringInfo) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.metrics.GetAttempted(), j.metrics.GetCommitted()
}

// ArtifactPath returns the local file path of a staged artifact of an environment, by role URN (e.g.
// "beam:artifact:role:go_worker_binary:v1"), or "" if none.
func (j *Job) ArtifactPath(envID, roleURN string) string {
	for _, a := range j.staged[envID] {
		if a.role == roleURN {
			return a.path
		}
	}
	return ""
}

// info returns the job as the Job API describes it.
func (j *Job) info() *jobpb.JobInfo {
	return &jobpb.JobInfo{JobId: j.ID, JobName: j.Name, PipelineOptions: j.Options, State: j.State()}
}

// Wait waits until the job has ended, or ctx has, and returns its state.
func (j *Job) Wait(ctx context.Context) jobpb.JobState_Enum {
	for {
		j.mu.Lock()
		st, changed := j.state, j.changed
		j.mu.Unlock()
		if isTerminal(st) {
			return st
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return st
		}
	}
}

// Cancel cancels a job that has not ended (as the Job API's Cancel does)
// and returns its state after the request.
func (j *Job) Cancel() jobpb.JobState_Enum { return j.requestCancel() }

// requestCancel moves a job that has not ended to CANCELLING and cancels its Execute context. It returns
// the state after the request.
func (j *Job) requestCancel() jobpb.JobState_Enum {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.setStateLocked(jobpb.JobState_CANCELLING) {
		j.log.Info("cancelling job")
		j.cancel()
	}
	return j.state
}

func (j *Job) appendLocked(e *jobpb.JobMessagesResponse) {
	if se := e.GetStateResponse(); se != nil {
		j.state = se.GetState()
	}
	j.events = append(j.events, e)
	close(j.changed)
	j.changed = make(chan struct{})
}

// eventsFrom returns the events from index i on and a channel closed when more arrive.
func (j *Job) eventsFrom(i int) ([]*jobpb.JobMessagesResponse, <-chan struct{}) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.events[i:len(j.events):len(j.events)], j.changed
}

// lastStateIndex returns the index of the latest state event.
func (j *Job) lastStateIndex() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.events) - 1; i > 0; i-- {
		if j.events[i].GetStateResponse() != nil {
			return i
		}
	}
	return 0
}

// follow calls send for each event from index start on, in order, waiting for new ones, until it has sent
// a terminal state, send fails or ctx ends.
func (j *Job) follow(ctx context.Context, start int, send func(*jobpb.JobMessagesResponse) error) error {
	for i := start; ; {
		evs, changed := j.eventsFrom(i)
		for _, e := range evs {
			i++
			if err := send(e); err != nil {
				return err
			}
			if isTerminal(e.GetStateResponse().GetState()) {
				return nil
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func stateEvent(s jobpb.JobState_Enum) *jobpb.JobMessagesResponse {
	return &jobpb.JobMessagesResponse{Response: &jobpb.JobMessagesResponse_StateResponse{
		StateResponse: &jobpb.JobStateEvent{State: s, Timestamp: timestamppb.Now()},
	}}
}

// isTerminal reports whether a job in state s has ended for good.
func isTerminal(s jobpb.JobState_Enum) bool {
	switch s {
	case jobpb.JobState_DONE, jobpb.JobState_FAILED, jobpb.JobState_CANCELLED, jobpb.JobState_UPDATED, jobpb.JobState_DRAINED:
		return true
	}
	return false
}
