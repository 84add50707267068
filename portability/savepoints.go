package portability

import (
	"context"
	"fmt"
	"slices"

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
//	  // Request:  {"job_id": string, "target": string (optional: the job's --savepoint_dir)}
//	  // Response: {"path": string (the savepoint directory's URL)}
//	  rpc Take(google.protobuf.Struct) returns (google.protobuf.Struct);
//	}
//
// Errors: NotFound for an unknown job, FailedPrecondition for a job that is
// not running or cannot take savepoints, InvalidArgument for a malformed
// request, and the executor's error otherwise.
const (
	SavepointsService = "weir.v1.Savepoints"
	takeMethod        = "/" + SavepointsService + "/Take"
)

// Field names of the Take request and response.
const (
	fieldJobID  = "job_id"
	fieldTarget = "target"
	fieldPath   = "path"
)

// savepointsServer is the handler type of the service.
type savepointsServer interface {
	Take(context.Context, *structpb.Struct) (*structpb.Struct, error)
}

var savepointsDesc = grpc.ServiceDesc{
	ServiceName: SavepointsService,
	HandlerType: (*savepointsServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Take", Handler: takeHandler}},
	Metadata:    "portability/savepoints.go",
}

func takeHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	take := func(ctx context.Context, req any) (any, error) {
		return srv.(savepointsServer).Take(ctx, req.(*structpb.Struct))
	}
	if interceptor == nil {
		return take(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: takeMethod}, take)
}

// savepointService implements weir.v1.Savepoints on a Server.
type savepointService struct{ s *Server }

func (ss *savepointService) Take(ctx context.Context, req *structpb.Struct) (*structpb.Struct, error) {
	f, err := stringFields(req, fieldJobID, fieldTarget)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "take savepoint: %v", err)
	}
	if f[fieldJobID] == "" {
		return nil, status.Error(codes.InvalidArgument, "take savepoint: the request has no job_id")
	}
	j, err := ss.s.lookup(f[fieldJobID])
	if err != nil {
		return nil, grpcError("take savepoint", err)
	}
	path, err := j.takeSavepoint(ctx, f[fieldTarget])
	if err != nil {
		return nil, grpcError("take savepoint", err)
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{fieldPath: structpb.NewStringValue(path)}}, nil
}

// TakeSavepoint asks the weir job server on conn for a savepoint of the
// running job jobID into target (a storage URL; "" means the job's
// --savepoint_dir) and returns the savepoint's path.
func TakeSavepoint(ctx context.Context, conn grpc.ClientConnInterface, jobID, target string) (string, error) {
	req := &structpb.Struct{Fields: map[string]*structpb.Value{fieldJobID: structpb.NewStringValue(jobID)}}
	if target != "" {
		req.Fields[fieldTarget] = structpb.NewStringValue(target)
	}
	resp := new(structpb.Struct)
	if err := conn.Invoke(ctx, takeMethod, req, resp); err != nil {
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
