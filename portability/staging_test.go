package portability

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/artifact"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal/runnerlib"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// writeRandomFile writes n random bytes to a new file in dir and returns its path, contents and SHA-256.
func writeRandomFile(t *testing.T, dir, name string, n int) (string, []byte, string) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	sum := sha256.Sum256(data)
	return path, data, hex.EncodeToString(sum[:])
}

func fileDep(t *testing.T, path, sha, role string, rolePayload proto.Message) *pipepb.ArtifactInformation {
	t.Helper()
	tp, err := proto.Marshal(&pipepb.ArtifactFilePayload{Path: path, Sha256: sha})
	if err != nil {
		t.Fatal(err)
	}
	a := &pipepb.ArtifactInformation{TypeUrn: urnFileArtifact, TypePayload: tp, RoleUrn: role}
	if rolePayload != nil {
		if a.RolePayload, err = proto.Marshal(rolePayload); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func filePath(t *testing.T, a *pipepb.ArtifactInformation) (string, string) {
	t.Helper()
	if a.GetTypeUrn() != urnFileArtifact {
		t.Errorf("artifact type %q, want %q", a.GetTypeUrn(), urnFileArtifact) // may run in Execute
	}
	var fp pipepb.ArtifactFilePayload
	if err := proto.Unmarshal(a.GetTypePayload(), &fp); err != nil {
		t.Error(err)
	}
	return fp.GetPath(), fp.GetSha256()
}

// TestStagingRoundTrip stages two environments' files with Beam's client (runnerlib.Stage), then has a
// worker retrieve them with Beam's artifact.Materialize while the job runs.
func TestStagingRoundTrip(t *testing.T) {
	src := t.TempDir()
	bin, binData, binSHA := writeRandomFile(t, src, "worker", 2<<20+12345) // several chunks
	extra, extraData, extraSHA := writeRandomFile(t, src, "extra.txt", 10)
	goDep := fileDep(t, bin, binSHA, urnGoWorkerBinRole, nil)
	p := testPipeline(goDep)
	p.Components.Environments["py"] = &pipepb.Environment{Urn: "beam:env:external:v1", Dependencies: []*pipepb.ArtifactInformation{
		proto.Clone(goDep).(*pipepb.ArtifactInformation), // the same file: fetched once
		fileDep(t, extra, extraSHA, urnStagingToRole, &pipepb.ArtifactStagingToRolePayload{StagedName: "deps/extra.txt"}),
	}}

	stagingDir := t.TempDir()
	var e *testEnv
	exec := &fakeExec{run: func(ctx context.Context, j *Job) error {
		got := j.ArtifactPath("go", urnGoWorkerBinRole)
		if !strings.HasPrefix(got, stagingDir) {
			return fmt.Errorf("ArtifactPath = %q, want a file under %s", got, stagingDir)
		}
		if b, err := os.ReadFile(got); err != nil || !bytes.Equal(b, binData) {
			return fmt.Errorf("staged worker binary %s differs from the original (err %v)", got, err)
		}
		if fi, err := os.Stat(got); err != nil || fi.Mode().Perm()&0o100 == 0 {
			return fmt.Errorf("staged worker binary %s is not executable (%v, %v)", got, fi, err)
		}
		if p := j.ArtifactPath("go", "beam:artifact:role:nothing:v1"); p != "" {
			return fmt.Errorf("ArtifactPath of an unknown role = %q, want \"\"", p)
		}
		envs := j.Pipeline.GetComponents().GetEnvironments()
		goPath, goSHA := filePath(t, envs["go"].GetDependencies()[0])
		pyPath, _ := filePath(t, envs["py"].GetDependencies()[0])
		if goPath != got || goSHA != binSHA || pyPath != got {
			return fmt.Errorf("rewritten go dependency = %s (sha %s), py = %s; want %s (sha %s) for both", goPath, goSHA, pyPath, got, binSHA)
		}
		if role := envs["py"].GetDependencies()[1].GetRoleUrn(); role != urnStagingToRole {
			return fmt.Errorf("py dependency role = %q, want it kept as %q", role, urnStagingToRole)
		}
		// A worker of the py environment materializes its dependencies.
		dest := t.TempDir()
		out, err := artifact.Materialize(ctx, e.addr, envs["py"].GetDependencies(), "", dest)
		if err != nil {
			return fmt.Errorf("artifact.Materialize: %w", err)
		}
		if len(out) != 2 {
			return fmt.Errorf("Materialize returned %d artifacts, want 2", len(out))
		}
		if b, err := os.ReadFile(filepath.Join(dest, "deps", "extra.txt")); err != nil || !bytes.Equal(b, extraData) {
			return fmt.Errorf("retrieved deps/extra.txt differs (err %v)", err)
		}
		matches, _ := filepath.Glob(filepath.Join(dest, "*-worker"))
		if len(matches) != 1 {
			return fmt.Errorf("retrieved worker binary: found %v", matches)
		}
		if b, err := os.ReadFile(matches[0]); err != nil || !bytes.Equal(b, binData) {
			return fmt.Errorf("retrieved worker binary differs (err %v)", err)
		}
		return nil
	}}
	e = startServer(t, exec, Options{StagingDir: stagingDir})
	ctx := testCtx(t)
	prep := e.prepare(t, "staged", p)
	if got := prep.GetArtifactStagingEndpoint().GetUrl(); got != e.addr {
		t.Errorf("staging endpoint = %q, want %q", got, e.addr)
	}
	token, err := runnerlib.Stage(ctx, prep.GetPreparationId(), prep.GetArtifactStagingEndpoint().GetUrl(), bin, prep.GetStagingSessionToken())
	if err != nil {
		t.Fatalf("runnerlib.Stage: %v", err)
	}
	run, err := e.client.Run(ctx, &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId(), RetrievalToken: token})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := runnerlib.WaitForCompletion(ctx, e.client, run.GetJobId()); err != nil {
		t.Fatalf("job: %v", err)
	}
	// The job's files are gone once it has ended, and are no longer served.
	staged := e.srv.Job(run.GetJobId()).ArtifactPath("go", urnGoWorkerBinRole)
	if _, err := os.Stat(staged); !os.IsNotExist(err) {
		t.Errorf("staged file %s after the job ended: %v, want it removed", staged, err)
	}
	rc := jobpb.NewArtifactRetrievalServiceClient(e.cc)
	gs, err := rc.GetArtifact(ctx, &jobpb.GetArtifactRequest{Artifact: fileDep(t, staged, "", "", nil)})
	if err == nil {
		_, err = gs.Recv()
	}
	wantCode(t, "GetArtifact after the job ended", err, codes.NotFound, "not staged")
}

// TestStagingNothing covers clients with nothing to offer: no dependencies, and a stream closed at once.
func TestStagingNothing(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	prep := e.prepare(t, "nodeps", testPipeline())
	if _, err := runnerlib.Stage(ctx, prep.GetPreparationId(), e.addr, "/nonexistent", prep.GetStagingSessionToken()); err != nil {
		t.Fatalf("runnerlib.Stage without dependencies: %v", err)
	}
	stream, err := jobpb.NewArtifactStagingServiceClient(e.cc).ReverseArtifactRetrievalService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("stream closed by the client at once: Recv = %v, want EOF", err)
	}
	run, err := e.client.Run(ctx, &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId()})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := runnerlib.WaitForCompletion(ctx, e.client, run.GetJobId()); err != nil {
		t.Errorf("job: %v", err)
	}
}

// TestStagingSendsHeaders: with nothing to stage the server still sends response headers before it ends
// the stream. Beam's TypeScript client (grpc-js through protobuf-ts) awaits them, and a stream ended with a
// status alone never delivers any: the client would wait at "Staging artifacts" forever.
func TestStagingSendsHeaders(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	prep := e.prepare(t, "headers", testPipeline())
	stream, err := jobpb.NewArtifactStagingServiceClient(e.cc).ReverseArtifactRetrievalService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&jobpb.ArtifactResponseWrapper{StagingToken: prep.GetStagingSessionToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("nothing to stage: Recv = %v, want EOF", err)
	}
	// Header returns nil metadata when the stream ended with a status alone (trailers only).
	if md, err := stream.Header(); err != nil || md == nil {
		t.Errorf("Header() = %v, %v; want response headers before the status", md, err)
	}
}

// TestStagingErrors covers an unknown token and a client that stops in the middle of a file: the partial
// file is removed and the preparation can be staged again.
func TestStagingErrors(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	sc := jobpb.NewArtifactStagingServiceClient(e.cc)

	stream, err := sc.ReverseArtifactRetrievalService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&jobpb.ArtifactResponseWrapper{StagingToken: "bogus"}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, "unknown staging token", err, codes.NotFound, "bogus")

	src := t.TempDir()
	bin, _, sha := writeRandomFile(t, src, "worker", 100)
	prep := e.prepare(t, "broken", testPipeline(fileDep(t, bin, sha, urnGoWorkerBinRole, nil)))
	stream, err = sc.ReverseArtifactRetrievalService(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&jobpb.ArtifactResponseWrapper{StagingToken: prep.GetStagingSessionToken()}); err != nil {
		t.Fatal(err)
	}
	req, err := stream.Recv()
	if err != nil || req.GetResolveArtifact() == nil {
		t.Fatalf("first request = %v, %v; want a resolve request", req, err)
	}
	if err := stream.Send(&jobpb.ArtifactResponseWrapper{Response: &jobpb.ArtifactResponseWrapper_ResolveArtifactResponse{
		ResolveArtifactResponse: &jobpb.ResolveArtifactsResponse{Replacements: req.GetResolveArtifact().GetArtifacts()},
	}}); err != nil {
		t.Fatal(err)
	}
	if req, err = stream.Recv(); err != nil || req.GetGetArtifact() == nil {
		t.Fatalf("second request = %v, %v; want a get request", req, err)
	}
	if err := stream.Send(&jobpb.ArtifactResponseWrapper{Response: &jobpb.ArtifactResponseWrapper_GetArtifactResponse{
		GetArtifactResponse: &jobpb.GetArtifactResponse{Data: []byte("partial")},
	}}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	_, err = stream.Recv()
	wantCode(t, "stream closed mid-file", err, codes.InvalidArgument, "closed the stream")
	dir := e.srv.prepDir(prep.GetPreparationId())
	if entries, err := os.ReadDir(dir); !os.IsNotExist(err) {
		t.Errorf("staging dir after a failed staging: %v, %v; want it removed", entries, err)
	}

	// Staging again with Beam's client succeeds.
	if _, err := runnerlib.Stage(ctx, prep.GetPreparationId(), e.addr, bin, prep.GetStagingSessionToken()); err != nil {
		t.Fatalf("runnerlib.Stage after a failed staging: %v", err)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("staging dir after staging again: %v, %v; want one file", entries, err)
	}
}

func TestRetrievalRefusesUnstagedFiles(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	rc := jobpb.NewArtifactRetrievalServiceClient(e.cc)
	src, _, _ := writeRandomFile(t, t.TempDir(), "secret", 10)
	gs, err := rc.GetArtifact(ctx, &jobpb.GetArtifactRequest{Artifact: fileDep(t, src, "", "", nil)})
	if err == nil {
		_, err = gs.Recv()
	}
	wantCode(t, "GetArtifact of an unstaged file", err, codes.NotFound, "not staged")
	gs, err = rc.GetArtifact(ctx, &jobpb.GetArtifactRequest{Artifact: &pipepb.ArtifactInformation{TypeUrn: urnURLArtifact}})
	if err == nil {
		_, err = gs.Recv()
	}
	wantCode(t, "GetArtifact of a URL", err, codes.InvalidArgument, urnURLArtifact)
	deps := []*pipepb.ArtifactInformation{fileDep(t, src, "", urnGoWorkerBinRole, nil)}
	res, err := rc.ResolveArtifacts(ctx, &jobpb.ResolveArtifactsRequest{Artifacts: deps})
	if err != nil || len(res.GetReplacements()) != 1 || !proto.Equal(res.GetReplacements()[0], deps[0]) {
		t.Errorf("ResolveArtifacts = %v, %v; want the artifacts as given", res, err)
	}
}

func TestUnrunPreparationsExpire(t *testing.T) {
	e := startServer(t, &fakeExec{}, Options{})
	ctx := testCtx(t)
	bin, _, sha := writeRandomFile(t, t.TempDir(), "worker", 100)
	prep := e.prepare(t, "forgotten", testPipeline(fileDep(t, bin, sha, urnGoWorkerBinRole, nil)))
	if _, err := runnerlib.Stage(ctx, prep.GetPreparationId(), e.addr, bin, prep.GetStagingSessionToken()); err != nil {
		t.Fatalf("runnerlib.Stage: %v", err)
	}
	dir := e.srv.prepDir(prep.GetPreparationId())
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("staging dir: %v", err)
	}
	e.srv.expire(time.Now().Add(preparationTTL + time.Minute))
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("staging dir of an expired preparation: %v, want it removed", err)
	}
	_, err := e.client.Run(ctx, &jobpb.RunJobRequest{PreparationId: prep.GetPreparationId()})
	wantCode(t, "Run of an expired preparation", err, codes.NotFound, prep.GetPreparationId())
}
