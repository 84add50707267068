package portability

import (
	"context"
	"errors"
	"log/slog"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// jobService implements Beam's JobService on a Server.
type jobService struct {
	jobpb.UnimplementedJobServiceServer
	s *Server
}

func (js *jobService) Prepare(_ context.Context, req *jobpb.PrepareJobRequest) (*jobpb.PrepareJobResponse, error) {
	s := js.s
	p := req.GetPipeline()
	if p == nil {
		return nil, status.Error(codes.InvalidArgument, "prepare: the request has no pipeline")
	}
	if err := s.exec.Validate(p, req.GetPipelineOptions()); err != nil {
		s.log.Info("pipeline rejected", slog.String("name", req.GetJobName()), slog.Any("error", err))
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	prep, endpoint, err := s.prepare(req.GetJobName(), p, req.GetPipelineOptions())
	if err != nil {
		return nil, grpcError("prepare", err)
	}
	s.log.Info("job prepared", slog.String("name", req.GetJobName()), slog.String("preparation", prep.id))
	return &jobpb.PrepareJobResponse{
		PreparationId:           prep.id,
		ArtifactStagingEndpoint: &pipepb.ApiServiceDescriptor{Url: endpoint},
		StagingSessionToken:     prep.id,
	}, nil
}

func (js *jobService) Run(_ context.Context, req *jobpb.RunJobRequest) (*jobpb.RunJobResponse, error) {
	j, err := js.s.run(req.GetPreparationId())
	if err != nil {
		return nil, grpcError("run", err)
	}
	return &jobpb.RunJobResponse{JobId: j.ID}, nil
}

func (js *jobService) GetJobs(context.Context, *jobpb.GetJobsRequest) (*jobpb.GetJobsResponse, error) {
	resp := &jobpb.GetJobsResponse{}
	for _, j := range js.s.Jobs() {
		resp.JobInfo = append(resp.JobInfo, j.info())
	}
	return resp, nil
}

func (js *jobService) GetState(_ context.Context, req *jobpb.GetJobStateRequest) (*jobpb.JobStateEvent, error) {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return nil, grpcError("get state", err)
	}
	evs, _ := j.eventsFrom(j.lastStateIndex())
	return evs[0].GetStateResponse(), nil
}

func (js *jobService) GetPipeline(_ context.Context, req *jobpb.GetJobPipelineRequest) (*jobpb.GetJobPipelineResponse, error) {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return nil, grpcError("get pipeline", err)
	}
	return &jobpb.GetJobPipelineResponse{Pipeline: j.Pipeline}, nil
}

func (js *jobService) Cancel(_ context.Context, req *jobpb.CancelJobRequest) (*jobpb.CancelJobResponse, error) {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return nil, grpcError("cancel", err)
	}
	return &jobpb.CancelJobResponse{State: j.requestCancel()}, nil
}

func (js *jobService) Drain(_ context.Context, req *jobpb.DrainJobRequest) (*jobpb.DrainJobResponse, error) {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return nil, grpcError("drain", err)
	}
	st, err := j.requestDrain()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &jobpb.DrainJobResponse{State: st}, nil
}

// GetStateStream sends the job's current state, then each change, and ends after a terminal state.
func (js *jobService) GetStateStream(req *jobpb.GetJobStateRequest, stream jobpb.JobService_GetStateStreamServer) error {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return grpcError("get state stream", err)
	}
	err = j.follow(stream.Context(), j.lastStateIndex(), func(e *jobpb.JobMessagesResponse) error {
		if se := e.GetStateResponse(); se != nil {
			return stream.Send(se)
		}
		return nil
	})
	return grpcError("get state stream", err)
}

// GetMessageStream sends every state change and message of the job from its start, in order, and ends after
// a terminal state.
func (js *jobService) GetMessageStream(req *jobpb.JobMessagesRequest, stream jobpb.JobService_GetMessageStreamServer) error {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return grpcError("get message stream", err)
	}
	return grpcError("get message stream", j.follow(stream.Context(), 0, stream.Send))
}

func (js *jobService) GetJobMetrics(_ context.Context, req *jobpb.GetJobMetricsRequest) (*jobpb.GetJobMetricsResponse, error) {
	j, err := js.s.lookup(req.GetJobId())
	if err != nil {
		return nil, grpcError("get job metrics", err)
	}
	attempted, committed := j.currentMetrics()
	// runnerlib dereferences Metrics unconditionally: it must never be nil.
	return &jobpb.GetJobMetricsResponse{Metrics: &jobpb.MetricResults{Attempted: attempted, Committed: committed}}, nil
}

func (js *jobService) DescribePipelineOptions(context.Context, *jobpb.DescribePipelineOptionsRequest) (*jobpb.DescribePipelineOptionsResponse, error) {
	return &jobpb.DescribePipelineOptionsResponse{}, nil
}

// grpcError turns an error of the server into a gRPC status error whose message names the call; nil and
// status errors are returned as they are.
func grpcError(call string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, errNotFound):
		code = codes.NotFound
	case errors.Is(err, errStopped):
		code = codes.Unavailable
	case errors.Is(err, errStaging), errors.Is(err, errNotReady), errors.Is(err, errCannotSavepoint):
		code = codes.FailedPrecondition
	case errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Errorf(code, "%s: %v", call, err)
}
