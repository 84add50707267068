package portability

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Artifact URNs of Beam's portability framework.
const (
	urnFileArtifact    = "beam:artifact:type:file:v1"
	urnURLArtifact     = "beam:artifact:type:url:v1"
	urnStagingToRole   = "beam:artifact:role:staging_to:v1"
	urnGoWorkerBinRole = "beam:artifact:role:go_worker_binary:v1"
)

var errInvalid = errors.New("invalid request")

// stagingService implements Beam's ArtifactStagingService on a Server.
type stagingService struct {
	jobpb.UnimplementedArtifactStagingServiceServer
	s *Server
}

// stagingStream is the server side of ReverseArtifactRetrievalService: the server sends requests and the
// client answers them.
type stagingStream = jobpb.ArtifactStagingService_ReverseArtifactRetrievalServiceServer

// ReverseArtifactRetrievalService receives the staging token, then asks the client to resolve each
// environment's dependencies and to send each resolved artifact, writes them under the preparation's
// staging directory and rewrites the dependencies to the local files. The stream ends when all are staged.
//
// Response headers go out first: a client that awaits them (grpc-js through protobuf-ts, as Beam's
// TypeScript SDK stages) never sees any when a stream ends with a status alone, and would wait forever.
func (ss *stagingService) ReverseArtifactRetrievalService(stream stagingStream) error {
	s := ss.s
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return grpcError("artifact staging: sending response headers", err)
	}
	first, err := stream.Recv()
	if err == io.EOF {
		return nil // the client offered nothing
	}
	if err != nil {
		return grpcError("artifact staging: receiving the staging token", err)
	}
	token := first.GetStagingToken()
	p, dir, err := s.beginStaging(token)
	if err != nil {
		return grpcError("artifact staging", err)
	}
	log := s.log.With(slog.String("preparation", token))
	st := &stager{stream: stream, dir: dir, fetched: map[string]*pipepb.ArtifactInformation{}, log: log}
	staged, err := st.stageAll(p)
	if err == nil {
		err = s.finishStaging(token, p, staged, st.files)
	}
	if err != nil {
		s.abortStaging(token, dir)
		log.Warn("artifact staging failed", slog.Any("error", err))
		return grpcError("artifact staging", err)
	}
	log.Info("artifacts staged", slog.Int("files", len(st.files)))
	return nil
}

// beginStaging marks a preparation as being staged and returns a copy of its pipeline and the directory
// to stage into. A new staging replaces whatever an earlier one staged.
func (s *Server) beginStaging(token string) (*pipepb.Pipeline, string, error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, "", errStopped
	}
	prep, ok := s.preps[token]
	if !ok {
		s.mu.Unlock()
		return nil, "", fmt.Errorf("staging token %q %w (Prepare returns it)", token, errNotFound)
	}
	if prep.staging {
		s.mu.Unlock()
		return nil, "", fmt.Errorf("preparation %q: %w on another stream", token, errStaging)
	}
	prep.staging = true
	prep.rewritten, prep.staged = nil, nil
	prep.dir = s.prepDir(token)
	p := proto.Clone(prep.pipeline).(*pipepb.Pipeline)
	s.mu.Unlock()

	s.removeStaged(token, prep.dir)
	// Mkdir, not MkdirAll: if Stop removed the staging directory meanwhile, fail instead of recreating it.
	if err := os.Mkdir(prep.dir, 0o755); err != nil {
		s.abortStaging(token, prep.dir)
		return nil, "", fmt.Errorf("creating staging directory: %w", err)
	}
	return p, prep.dir, nil
}

// finishStaging records the rewritten pipeline and the staged files of a preparation.
func (s *Server) finishStaging(token string, p *pipepb.Pipeline, staged map[string][]stagedArtifact, files []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errStopped
	}
	prep, ok := s.preps[token]
	if !ok {
		return fmt.Errorf("preparation %q %w any more", token, errNotFound)
	}
	prep.staging = false
	prep.rewritten, prep.staged = p, staged
	for _, f := range files {
		s.served[f] = token
	}
	return nil
}

// abortStaging removes what a failed staging wrote and lets the preparation be staged again or run.
func (s *Server) abortStaging(token, dir string) {
	s.mu.Lock()
	if prep, ok := s.preps[token]; ok {
		prep.staging = false
	}
	s.mu.Unlock()
	s.removeStaged(token, dir)
}

// stager drives one staging stream.
type stager struct {
	stream  stagingStream
	dir     string
	log     *slog.Logger
	fetched map[string]*pipepb.ArtifactInformation // type URN + payload → the local file artifact
	files   []string
}

// stageAll stages every environment's dependencies and rewrites them in p.
func (st *stager) stageAll(p *pipepb.Pipeline) (map[string][]stagedArtifact, error) {
	envs := p.GetComponents().GetEnvironments()
	ids := make([]string, 0, len(envs))
	for id := range envs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	staged := map[string][]stagedArtifact{}
	for _, id := range ids {
		env := envs[id]
		if len(env.GetDependencies()) == 0 {
			continue
		}
		deps, err := st.stageEnv(env.GetDependencies())
		if err != nil {
			return nil, fmt.Errorf("environment %q: %w", id, err)
		}
		env.Dependencies = deps
		for _, d := range deps {
			var fp pipepb.ArtifactFilePayload
			if err := proto.Unmarshal(d.GetTypePayload(), &fp); err != nil {
				return nil, fmt.Errorf("environment %q: decoding a staged file payload: %w", id, err)
			}
			staged[id] = append(staged[id], stagedArtifact{role: d.GetRoleUrn(), path: fp.GetPath()})
		}
	}
	return staged, nil
}

// stageEnv resolves one environment's dependencies with the client, fetches each and returns them as
// local file artifacts.
func (st *stager) stageEnv(deps []*pipepb.ArtifactInformation) ([]*pipepb.ArtifactInformation, error) {
	err := st.stream.Send(&jobpb.ArtifactRequestWrapper{Request: &jobpb.ArtifactRequestWrapper_ResolveArtifact{
		ResolveArtifact: &jobpb.ResolveArtifactsRequest{Artifacts: deps},
	}})
	if err != nil {
		return nil, fmt.Errorf("sending resolve request: %w", err)
	}
	in, err := st.recv("resolve response")
	if err != nil {
		return nil, err
	}
	resolved := in.GetResolveArtifactResponse()
	if resolved == nil {
		return nil, fmt.Errorf("%w: got %T, want a resolve artifacts response", errInvalid, in.GetResponse())
	}
	var out []*pipepb.ArtifactInformation
	for _, a := range resolved.GetReplacements() {
		key := a.GetTypeUrn() + "\x00" + string(a.GetTypePayload())
		local, ok := st.fetched[key]
		if !ok {
			if local, err = st.fetch(a); err != nil {
				return nil, err
			}
			st.fetched[key] = local
		}
		out = append(out, &pipepb.ArtifactInformation{
			TypeUrn:     local.GetTypeUrn(),
			TypePayload: local.GetTypePayload(),
			RoleUrn:     a.GetRoleUrn(),
			RolePayload: a.GetRolePayload(),
		})
	}
	return out, nil
}

// fetch asks the client for one artifact and writes it to a new file.
func (st *stager) fetch(a *pipepb.ArtifactInformation) (_ *pipepb.ArtifactInformation, err error) {
	name := strconv.Itoa(len(st.files)+1) + "-" + sanitize(baseName(a), "artifact")
	file := filepath.Join(st.dir, name)
	err = st.stream.Send(&jobpb.ArtifactRequestWrapper{Request: &jobpb.ArtifactRequestWrapper_GetArtifact{
		GetArtifact: &jobpb.GetArtifactRequest{Artifact: a},
	}})
	if err != nil {
		return nil, fmt.Errorf("requesting artifact %s: %w", name, err)
	}
	mode := os.FileMode(0o644)
	if a.GetRoleUrn() == urnGoWorkerBinRole {
		mode = 0o755
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return nil, fmt.Errorf("creating staged file: %w", err)
	}
	st.files = append(st.files, file)
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing staged file %s: %w", file, cerr)
		}
	}()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	var size int64
	for {
		in, err := st.recv("artifact chunk of " + name)
		if err != nil {
			return nil, err
		}
		switch r := in.GetResponse().(type) {
		case *jobpb.ArtifactResponseWrapper_GetArtifactResponse:
			n, err := w.Write(r.GetArtifactResponse.GetData())
			size += int64(n)
			if err != nil {
				return nil, fmt.Errorf("writing staged file %s: %w", file, err)
			}
		case nil:
		default:
			return nil, fmt.Errorf("%w: got %T, want an artifact chunk", errInvalid, r)
		}
		if in.GetIsLast() {
			break
		}
	}
	if err := w.Flush(); err != nil {
		return nil, fmt.Errorf("writing staged file %s: %w", file, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	st.log.Debug("artifact staged", slog.String("file", file), slog.Int64("bytes", size), slog.String("sha256", sum))
	payload, err := proto.Marshal(&pipepb.ArtifactFilePayload{Path: file, Sha256: sum})
	if err != nil {
		return nil, fmt.Errorf("encoding file payload of %s: %w", file, err)
	}
	return &pipepb.ArtifactInformation{TypeUrn: urnFileArtifact, TypePayload: payload}, nil
}

// recv receives the client's next response, treating the end of the stream as an error.
func (st *stager) recv(what string) (*jobpb.ArtifactResponseWrapper, error) {
	in, err := st.stream.Recv()
	if err == io.EOF {
		return nil, fmt.Errorf("%w: the client closed the stream while the server waited for a %s", errInvalid, what)
	}
	if err != nil {
		return nil, fmt.Errorf("receiving %s: %w", what, err)
	}
	return in, nil
}

// baseName returns a readable file name for an artifact: the base of its staging name, path or URL.
func baseName(a *pipepb.ArtifactInformation) string {
	if a.GetRoleUrn() == urnStagingToRole {
		var rp pipepb.ArtifactStagingToRolePayload
		if proto.Unmarshal(a.GetRolePayload(), &rp) == nil && rp.GetStagedName() != "" {
			return path.Base(filepath.ToSlash(rp.GetStagedName()))
		}
	}
	switch a.GetTypeUrn() {
	case urnFileArtifact:
		var fp pipepb.ArtifactFilePayload
		if proto.Unmarshal(a.GetTypePayload(), &fp) == nil && fp.GetPath() != "" {
			return path.Base(filepath.ToSlash(fp.GetPath()))
		}
	case urnURLArtifact:
		var up pipepb.ArtifactUrlPayload
		if proto.Unmarshal(a.GetTypePayload(), &up) == nil && up.GetUrl() != "" {
			return path.Base(up.GetUrl())
		}
	}
	return "artifact"
}
