package portability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

// retrievalChunk is the size of the chunks GetArtifact sends.
const retrievalChunk = 1 << 20

// retrievalService implements Beam's ArtifactRetrievalService on a Server: it serves the files the server
// staged.
type retrievalService struct {
	jobpb.UnimplementedArtifactRetrievalServiceServer
	s *Server
}

// ResolveArtifacts returns the artifacts as they are: staged dependencies are already local files.
func (rs *retrievalService) ResolveArtifacts(_ context.Context, req *jobpb.ResolveArtifactsRequest) (*jobpb.ResolveArtifactsResponse, error) {
	return &jobpb.ResolveArtifactsResponse{Replacements: req.GetArtifacts()}, nil
}

// GetArtifact streams a staged file in chunks.
func (rs *retrievalService) GetArtifact(req *jobpb.GetArtifactRequest, stream jobpb.ArtifactRetrievalService_GetArtifactServer) error {
	file, err := rs.s.servedFile(req.GetArtifact())
	if err != nil {
		return grpcError("get artifact", err)
	}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return grpcError("get artifact", fmt.Errorf("staged file %s %w: %w", file, errNotFound, err))
	}
	if err != nil {
		return grpcError("get artifact", fmt.Errorf("opening staged file: %w", err))
	}
	defer f.Close()
	buf := make([]byte, retrievalChunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if serr := stream.Send(&jobpb.GetArtifactResponse{Data: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return grpcError("get artifact", fmt.Errorf("reading staged file: %w", err))
		}
	}
}

// servedFile returns the local path of an artifact if it is a file this server staged.
func (s *Server) servedFile(a *pipepb.ArtifactInformation) (string, error) {
	if a.GetTypeUrn() != urnFileArtifact {
		return "", fmt.Errorf("%w: artifact type %q is not served: only files staged here (%s) are", errInvalid, a.GetTypeUrn(), urnFileArtifact)
	}
	var fp pipepb.ArtifactFilePayload
	if err := proto.Unmarshal(a.GetTypePayload(), &fp); err != nil {
		return "", fmt.Errorf("%w: decoding the file payload: %w", errInvalid, err)
	}
	file := filepath.Clean(fp.GetPath())
	s.mu.Lock()
	_, ok := s.served[file]
	s.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("file %q was not staged by this server: %w", fp.GetPath(), errNotFound)
	}
	return file, nil
}
