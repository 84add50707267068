package portability

import (
	"context"
	"fmt"
	"slices"

	"github.com/weir-runner/weir/savepoint"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Beam's Job API has no call for savepoints, so weir serves its own small
// service next to it, on the same port. It is written by hand, without
// generated code: its messages are google.protobuf.Struct.
//
//	service weir.v1.Savepoints {
//	  // Take takes a savepoint of a RUNNING job.
//	  // Request:  {"job_id": string, "target": string (optional: the job's --savepoint_dir),
//	  //            "type": "canonical" (the default) or "native"}
//	  // Response: {"path": string (the savepoint directory's URL)}
//	  rpc Take(google.protobuf.Struct) returns (google.protobuf.Struct);
//	  // Stop stops a RUNNING job with a savepoint: its sources stop at a
//	  // position (with drain: the job drains first, every timer fires), the
//	  // savepoint is taken, and the job ends DONE.
//	  // Request:  {"job_id": string, "target": string (optional), "type": string (optional),
//	  //            "drain": bool (optional)}
//	  // Response: {"path": string}
//	  rpc Stop(google.protobuf.Struct) returns (google.protobuf.Struct);
//	}
//
// Errors: NotFound for an unknown job, FailedPrecondition for a job that is
// not running or cannot take savepoints, InvalidArgument for a malformed
// request, and the executor's error otherwise.
const (
	SavepointsService = "weir.v1.Savepoints"
	takeMethod        = "/" + SavepointsService + "/Take"
	stopMethod        = "/" + SavepointsService + "/Stop"
)

// Field names of the Take request and response.
const (
	fieldJobID  = "job_id"
	fieldTarget = "target"
	fieldPath   = "path"
	fieldDrain  = "drain"
	fieldType   = "type"
)

// SavepointRequest is what a savepoint is asked for with.
type SavepointRequest struct {
	// Target is a storage URL; "" means the job's --savepoint_dir.
	Target string
	// Type is the savepoint's format: "canonical" (or "") or "native"
	// (package savepoint).
	Type string
	// Drain has a stop drain the job first (every timer fires).
	Drain bool
}

// savepointsServer is the handler type of the service.
type savepointsServer interface {
	Take(context.Context, *structpb.Struct) (*structpb.Struct, error)
	Stop(context.Context, *structpb.Struct) (*structpb.Struct, error)
}

var savepointsDesc = grpc.ServiceDesc{
	ServiceName: SavepointsService,
	HandlerType: (*savepointsServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Take", Handler: handler(takeMethod, savepointsServer.Take)},
		{MethodName: "Stop", Handler: handler(stopMethod, savepointsServer.Stop)},
	},
	Metadata: "portability/savepoints.go",
}

// handler is the gRPC handler of a unary method of the service.
func handler(method string, call func(savepointsServer, context.Context, *structpb.Struct) (*structpb.Struct, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(structpb.Struct)
		if err := dec(in); err != nil {
			return nil, err
		}
		do := func(ctx context.Context, req any) (any, error) {
			return call(srv.(savepointsServer), ctx, req.(*structpb.Struct))
		}
		if interceptor == nil {
			return do(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: method}, do)
	}
}

// savepointService implements weir.v1.Savepoints on a Server.
type savepointService struct{ s *Server }

func (ss *savepointService) Take(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	j, sr, err := ss.request("take savepoint", req)
	if err != nil {
		return nil, err
	}
	path, err := j.takeSavepoint(ctx, sr)
	if err != nil {
		return nil, grpcError("take savepoint", err)
	}
	return pathResponse(path), nil
}

func (ss *savepointService) Stop(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	drain := false
	rest := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for k, v := range req.GetFields() {
		if k != fieldDrain {
			rest.Fields[k] = v
			continue
		}
		b, ok := v.GetKind().(*structpb.Value_BoolValue)
		if !ok {
			return nil, status.Errorf(codes.InvalidArgument, "stop with savepoint: field %q is not a bool", fieldDrain)
		}
		drain = b.BoolValue
	}
	j, sr, err := ss.request("stop with savepoint", rest)
	if err != nil {
		return nil, err
	}
	sr.Drain = drain
	path, err := j.StopWithSavepoint(ctx, sr)
	if err != nil {
		return nil, grpcError("stop with savepoint", err)
	}
	return pathResponse(path), nil
}

// request reads a request's job_id, target and type and finds the job.
func (ss *savepointService) request(what string, req *structpb.Struct) (*Job, SavepointRequest, error) {
	f, err := stringFields(req, fieldJobID, fieldTarget, fieldType)
	if err == nil {
		_, err = savepoint.ParseFormat(f[fieldType])
	}
	if err != nil {
		return nil, SavepointRequest{}, status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	}
	if f[fieldJobID] == "" {
		return nil, SavepointRequest{}, status.Errorf(codes.InvalidArgument, "%s: the request has no job_id", what)
	}
	j, err := ss.s.lookup(f[fieldJobID])
	if err != nil {
		return nil, SavepointRequest{}, grpcError(what, err)
	}
	return j, SavepointRequest{Target: f[fieldTarget], Type: f[fieldType]}, nil
}

func pathResponse(path string) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{fieldPath: structpb.NewStringValue(path)}}
}

// TakeSavepoint asks the weir job server on conn for a savepoint of the
// running job jobID into target (a storage URL; "" means the job's
// --savepoint_dir) and returns the savepoint's path.
func TakeSavepoint(ctx context.Context, conn grpc.ClientConnInterface, jobID, target string) (string, error) {
	return TakeSavepointWith(ctx, conn, jobID, SavepointRequest{Target: target})
}

// TakeSavepointWith is TakeSavepoint of a savepoint of type req.Type.
func TakeSavepointWith(ctx context.Context, conn grpc.ClientConnInterface, jobID string, req SavepointRequest) (string, error) {
	return callSavepoints(ctx, conn, takeMethod, jobID, req, nil)
}

// StopWithSavepoint asks the weir job server on conn to stop the running
// job jobID with a savepoint into target ("": the job's --savepoint_dir),
// draining it first if drain is set, and returns the savepoint's path.
func StopWithSavepoint(ctx context.Context, conn grpc.ClientConnInterface, jobID, target string, drain bool) (string, error) {
	return StopWithSavepointWith(ctx, conn, jobID, SavepointRequest{Target: target, Drain: drain})
}

// StopWithSavepointWith is StopWithSavepoint with a savepoint of type
// req.Type.
func StopWithSavepointWith(ctx context.Context, conn grpc.ClientConnInterface, jobID string, req SavepointRequest) (string, error) {
	return callSavepoints(ctx, conn, stopMethod, jobID, req, map[string]*structpb.Value{fieldDrain: structpb.NewBoolValue(req.Drain)})
}

// callSavepoints calls a method of the service for jobID and target (and
// more fields) and returns the path it answers.
func callSavepoints(ctx context.Context, conn grpc.ClientConnInterface, method, jobID string, sr SavepointRequest, more map[string]*structpb.Value) (string, error) {
	req := &structpb.Struct{Fields: map[string]*structpb.Value{fieldJobID: structpb.NewStringValue(jobID)}}
	if sr.Target != "" {
		req.Fields[fieldTarget] = structpb.NewStringValue(sr.Target)
	}
	if sr.Type != "" {
		req.Fields[fieldType] = structpb.NewStringValue(sr.Type)
	}
	for k, v := range more {
		req.Fields[k] = v
	}
	resp := new(structpb.Struct)
	if err := conn.Invoke(ctx, method, req, resp); err != nil {
		return "", err
	}
	f, err := stringFields(resp, fieldPath)
	if err == nil && f[fieldPath] == "" {
		err = fmt.Errorf("no %s", fieldPath)
	}
	if err != nil {
		return "", fmt.Errorf("savepoint of job %s: the server's response: %w", jobID, err)
	}
	return f[fieldPath], nil
}

// stringFields returns the fields of s, which must all be strings named in
// known: a misspelt field is refused rather than ignored.
func stringFields(s *structpb.Struct, known ...string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range s.GetFields() {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("unknown field %q (want %v)", k, known)
		}
		str, ok := v.GetKind().(*structpb.Value_StringValue)
		if !ok {
			return nil, fmt.Errorf("field %q is not a string", k)
		}
		out[k] = str.StringValue
	}
	return out, nil
}
