package portability

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

// preparationTTL is how long a preparation that is never run is kept, with its staged files.
const preparationTTL = time.Hour

// Options configure a Server.
type Options struct {
	// StagingDir is where staged artifacts are stored, one subdirectory per preparation. "" means a temporary
	// directory that Stop removes.
	StagingDir string
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Server serves Beam's Job API and artifact services and owns the jobs it runs.
type Server struct {
	exec       Executor
	log        *slog.Logger
	stagingDir string
	ownsDir    bool // stagingDir is a temporary directory created by NewServer

	ctx    context.Context // parent of every job's context; cancelled by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per running job goroutine

	mu       sync.Mutex
	stopped  bool
	endpoint string
	nPreps   int // preparations made
	nJobs    int // jobs run
	preps    map[string]*preparation
	jobs     map[string]*Job
	order    []*Job            // jobs in the order they were run
	served   map[string]string // staged file path → ID of the preparation that staged it
}

// preparation is a prepared job waiting for Run.
type preparation struct {
	id, name string
	pipeline *pipepb.Pipeline // as submitted
	options  *structpb.Struct
	created  time.Time

	staging   bool                        // a staging stream is writing files for it
	rewritten *pipepb.Pipeline            // pipeline with dependencies rewritten; set when staging completes
	staged    map[string][]stagedArtifact // set when staging completes
	dir       string                      // its staging directory once staging has started
}

// NewServer returns a server that runs jobs with exec.
func NewServer(exec Executor, o Options) (*Server, error) {
	if exec == nil {
		return nil, errors.New("portability: new server: nil Executor")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{
		exec:   exec,
		log:    log,
		preps:  map[string]*preparation{},
		jobs:   map[string]*Job{},
		served: map[string]string{},
	}
	if o.StagingDir == "" {
		dir, err := os.MkdirTemp("", "weir-staging-")
		if err != nil {
			return nil, fmt.Errorf("portability: creating temporary staging directory: %w", err)
		}
		s.stagingDir, s.ownsDir = dir, true
	} else {
		if err := os.MkdirAll(o.StagingDir, 0o755); err != nil {
			return nil, fmt.Errorf("portability: creating staging directory %q: %w", o.StagingDir, err)
		}
		s.stagingDir = o.StagingDir
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Register registers JobService, ArtifactStagingService, ArtifactRetrievalService and weir's own
// Savepoints service (see TakeSavepoint) on g.
func (s *Server) Register(g *grpc.Server) {
	jobpb.RegisterJobServiceServer(g, &jobService{s: s})
	g.RegisterService(&savepointsDesc, &savepointService{s: s})
	jobpb.RegisterArtifactStagingServiceServer(g, &stagingService{s: s})
	jobpb.RegisterArtifactRetrievalServiceServer(g, &retrievalService{s: s})
}

// SetEndpoint sets the address ("host:port") of the gRPC server the services are registered on; Prepare
// returns it to clients as the artifact staging endpoint.
func (s *Server) SetEndpoint(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoint = addr
}

// Jobs returns the jobs that were run, oldest first.
func (s *Server) Jobs() []*Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Job(nil), s.order...)
}

// Job returns the job with the given ID, or nil.
func (s *Server) Job(id string) *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobs[id]
}

// Stop cancels running jobs, waits for them to end, and removes the staging directory if the server created
// it (otherwise the staged files of jobs that never ran). Calls after Stop are refused.
func (s *Server) Stop() {
	s.mu.Lock()
	already := s.stopped
	s.stopped = true
	preps := s.preps
	s.preps = map[string]*preparation{}
	s.mu.Unlock()
	if already {
		return
	}
	s.cancel()
	s.wg.Wait()
	if s.ownsDir {
		if err := os.RemoveAll(s.stagingDir); err != nil {
			s.log.Warn("removing staging directory", slog.String("dir", s.stagingDir), slog.Any("error", err))
		}
		return
	}
	for _, p := range preps {
		s.removeStaged(p.id, p.dir)
	}
}

// prepare stores a new preparation and returns it with the staging endpoint.
func (s *Server) prepare(name string, p *pipepb.Pipeline, opts *structpb.Struct) (*preparation, string, error) {
	s.expire(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, "", errStopped
	}
	if s.endpoint == "" {
		return nil, "", fmt.Errorf("%w: the artifact staging endpoint is not set (Server.SetEndpoint)", errNotReady)
	}
	s.nPreps++
	prep := &preparation{
		id:       sanitize(name, "job") + "-prep-" + strconv.Itoa(s.nPreps),
		name:     name,
		pipeline: p,
		options:  opts,
		created:  time.Now(),
	}
	s.preps[prep.id] = prep
	return prep, s.endpoint, nil
}

// expire drops preparations older than preparationTTL that are not being staged, with their files.
func (s *Server) expire(now time.Time) {
	var old []*preparation
	s.mu.Lock()
	for id, p := range s.preps {
		if !p.staging && now.Sub(p.created) > preparationTTL {
			delete(s.preps, id)
			old = append(old, p)
		}
	}
	s.mu.Unlock()
	for _, p := range old {
		s.log.Info("dropping preparation that was never run", slog.String("preparation", p.id))
		s.removeStaged(p.id, p.dir)
	}
}

// run turns a preparation into a job and starts executing it.
func (s *Server) run(prepID string) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil, errStopped
	}
	prep, ok := s.preps[prepID]
	if !ok {
		return nil, fmt.Errorf("preparation %q %w", prepID, errNotFound)
	}
	if prep.staging {
		return nil, fmt.Errorf("preparation %q: %w", prepID, errStaging)
	}
	delete(s.preps, prepID)
	s.nJobs++
	id := sanitize(prep.name, "job") + "-" + strconv.Itoa(s.nJobs)
	p := prep.pipeline
	if prep.rewritten != nil {
		p = prep.rewritten
	}
	j := newJob(id, prep.name, p, prep.options, prep.staged, prep.dir, s.log)
	ctx, cancel := context.WithCancel(s.ctx)
	j.cancel = cancel
	j.SetState(jobpb.JobState_STARTING)
	s.jobs[id] = j
	s.order = append(s.order, j)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.execute(ctx, prep.id, j)
	}()
	j.log.Info("job submitted", slog.String("name", prep.name), slog.String("preparation", prep.id))
	return j, nil
}

// execute runs the job to its terminal state.
func (s *Server) execute(ctx context.Context, prepID string, j *Job) {
	j.SetState(jobpb.JobState_RUNNING) // ignored if already CANCELLING
	var err error
	if ctx.Err() == nil {
		err = s.callExecute(ctx, j)
	}
	// The job's files are removed before the terminal state is published: whoever sees it sees them gone.
	s.removeStaged(prepID, j.dir)
	switch {
	case ctx.Err() != nil:
		if err != nil && !errors.Is(err, context.Canceled) {
			j.Message(jobpb.JobMessage_JOB_MESSAGE_WARNING, "error while cancelling: "+err.Error())
		}
		j.log.Info("job cancelled")
		j.SetState(jobpb.JobState_CANCELLED)
	case err == nil:
		j.log.Info("job done")
		j.SetState(jobpb.JobState_DONE)
	default:
		j.log.Error("job failed", slog.Any("error", err))
		j.Message(jobpb.JobMessage_JOB_MESSAGE_ERROR, err.Error())
		j.SetState(jobpb.JobState_FAILED)
	}
}

// callExecute calls the executor, turning a panic into an error.
func (s *Server) callExecute(ctx context.Context, j *Job) (err error) {
	defer func() {
		if r := recover(); r != nil {
			j.log.Error("executor panicked", slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
			err = fmt.Errorf("executor panicked: %v", r)
		}
	}()
	return s.exec.Execute(ctx, j)
}

// removeStaged forgets a preparation's staged files and removes its staging directory.
func (s *Server) removeStaged(prepID, dir string) {
	s.mu.Lock()
	for path, owner := range s.served {
		if owner == prepID {
			delete(s.served, path)
		}
	}
	s.mu.Unlock()
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		s.log.Warn("removing staged artifacts", slog.String("dir", dir), slog.Any("error", err))
	}
}

// lookup returns the job with the given ID or an error naming it.
func (s *Server) lookup(id string) (*Job, error) {
	if j := s.Job(id); j != nil {
		return j, nil
	}
	return nil, fmt.Errorf("job %q %w", id, errNotFound)
}

var (
	errStopped  = errors.New("the job server is stopped")
	errNotFound = errors.New("not found")
	errStaging  = errors.New("artifact staging is in progress")
	errNotReady = errors.New("the job server is not ready")
	// errCannotSavepoint: the job is not running or cannot take savepoints.
	errCannotSavepoint = errors.New("cannot take a savepoint")
)

// sanitize turns a name into something safe for IDs and file names, or fallback if nothing is left.
func sanitize(name, fallback string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	if b.Len() == 0 || strings.Trim(b.String(), ".") == "" {
		return fallback
	}
	return b.String()
}

// prepDir returns the staging directory of a preparation.
func (s *Server) prepDir(prepID string) string {
	return filepath.Join(s.stagingDir, prepID)
}
