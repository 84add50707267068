package runner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal/runnerlib"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/weir-runner/weir/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// TestMain initialises Beam. Started by weir as a PROCESS worker (with
// --worker=true), this test binary becomes an SDK harness inside
// beam.Init and never runs the tests.
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv(childServeEnv) != "" {
		return childServe() // a `weir serve` for TestKill9Resume, until killed
	}
	if os.Getenv(childPipelineEnv) != "" {
		return childPipeline() // a program for TestKill9ResumeEmbedded
	}
	// runnerlib leaves a placeholder file in os.TempDir() for every
	// LOOPBACK job: keep them in a directory removed at exit.
	if dir, err := os.MkdirTemp("", "weir-runner-test-"); err == nil {
		os.Setenv("TMPDIR", dir)
		defer os.RemoveAll(dir)
	}
	return ptest.MainRetWithDefault(m, "weir")
}

const failureMessage = "weir-test: user DoFn refuses element"

var (
	alwaysFailCalls atomic.Int64 // calls of alwaysFail
	failedOnce      atomic.Bool  // set by failOnce when it has failed
)

// alwaysFail fails every bundle it sees.
func alwaysFail(x int, emit func(int)) error {
	alwaysFailCalls.Add(1)
	return fmt.Errorf("%s %d", failureMessage, x)
}

// failOnce fails the first time it sees element 50, after its bundle has
// already emitted the elements before it.
func failOnce(x int, emit func(string, int)) error {
	if x == 50 && failedOnce.CompareAndSwap(false, true) {
		return errors.New(failureMessage + " (first attempt only)")
	}
	emit(strconv.Itoa(x%3), x)
	return nil
}

// crashOnceFn kills its worker process the first time it sees element 50:
// it creates Marker (which must not exist) and exits. Later attempts find
// the marker and behave.
type crashOnceFn struct {
	Marker string
}

func (f *crashOnceFn) ProcessElement(x int, emit func(string, int)) {
	if x == 50 {
		if m, err := os.OpenFile(f.Marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(m, "crashed in pid %d\n", os.Getpid())
			m.Close()
			os.Exit(1)
		}
	}
	emit(strconv.Itoa(x%3), x)
}

// hangOnceFn freezes its worker process (SIGSTOP) the first time it sees
// element 50, after creating Marker; later attempts find the marker and
// behave. Only a liveness check can tell such a worker from a slow one.
type hangOnceFn struct {
	Marker string
}

func (f *hangOnceFn) ProcessElement(x int, emit func(string, int)) {
	if x == 50 {
		if m, err := os.OpenFile(f.Marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintf(m, "hung in pid %d\n", os.Getpid())
			m.Close()
			_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		}
	}
	emit(strconv.Itoa(x%3), x)
}

func formatKV(k string, v int) string { return fmt.Sprintf("%s=%d", k, v) }

func init() {
	register.Function2x1(formatKV)
	register.Function2x1(alwaysFail)
	register.Emitter1[int]()
	register.Function2x1(failOnce)
	register.Emitter2[string, int]()
	register.DoFn2x0[int, func(string, int)](&crashOnceFn{})
	register.DoFn2x0[int, func(string, int)](&hangOnceFn{})
	beam.RegisterType(reflect.TypeOf((*hangOnceFn)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*crashOnceFn)(nil)).Elem())
}

// sumsPipeline keys 1..100 by x%3, runs keyBy on them and sums per key;
// passert checks the sums, so an element lost or counted twice by a retry
// fails the job.
func sumsPipeline(keyBy any) *beam.Pipeline {
	p, s := beam.NewPipelineWithRoot()
	var in []int
	sums := map[string]int{}
	for x := 1; x <= 100; x++ {
		in = append(in, x)
		sums[strconv.Itoa(x%3)] += x
	}
	kvs := beam.ParDo(s, keyBy, beam.CreateList(s, in))
	got := beam.ParDo(s, formatKV, stats.SumPerKey(s, kvs))
	var want []any
	for k, v := range sums {
		want = append(want, fmt.Sprintf("%s=%d", k, v))
	}
	passert.Equals(s, got, want...)
	return p
}

// testLog forwards a server's logs to the test until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *testLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Logf("weir: %s", strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

// startWeir starts a weir server on 127.0.0.1:0 and stops it when the test ends.
func startWeir(t *testing.T, parallelism int) *runner.Server {
	t.Helper()
	return startWeirWith(t, runner.Config{Parallelism: parallelism})
}

// inProcessEnv, set to 1, runs every test's LOOPBACK workers in the test
// process (runner.Config.InProcess, as --runner=weir does) instead of over
// the Fn API: `make test` runs this package both ways.
const inProcessEnv = "WEIR_TEST_INPROCESS"

// startWeirWith starts a weir server with cfg (its TempDir and Logger are
// set here) and stops it when the test ends.
func startWeirWith(t *testing.T, cfg runner.Config) *runner.Server {
	t.Helper()
	cfg.InProcess = cfg.InProcess || os.Getenv(inProcessEnv) == "1"
	cfg.TempDir = t.TempDir()
	if cfg.Logger == nil {
		tl := &testLog{t: t}
		t.Cleanup(func() { tl.mu.Lock(); tl.done = true; tl.mu.Unlock() })
		cfg.Logger = slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := runner.Start(cfg)
	if err != nil {
		t.Fatalf("runner.Start: %v", err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// runOn runs p with --runner=weir against srv's endpoint in the given
// environment ("loopback" or "process"), as a user would, and bounds it
// so that a hang fails the test.
func runOn(t *testing.T, srv *runner.Server, p *beam.Pipeline, envType string) error {
	t.Helper()
	saved := []*string{jobopts.Endpoint, jobopts.EnvironmentType, jobopts.EnvironmentConfig, jobopts.WorkerBinary}
	old := make([]string, len(saved))
	for i, f := range saved {
		old[i] = *f
	}
	defer func() {
		for i, f := range saved {
			*f = old[i]
		}
	}()
	*jobopts.Endpoint = srv.Endpoint()
	*jobopts.EnvironmentType = envType
	if envType == "process" {
		// weir starts the staged Go worker binary itself; the payload only
		// has to be valid JSON for the SDK.
		*jobopts.EnvironmentConfig = `{}`
		bin, err := os.Executable()
		if err != nil {
			t.Fatalf("finding the test binary: %v", err)
		}
		*jobopts.WorkerBinary = bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := beam.Run(ctx, "weir", p)
	if ctx.Err() != nil {
		t.Fatalf("job did not end within its deadline (err %v)", err)
	}
	return err
}

// onlyJob returns the one job srv has run.
func onlyJob(t *testing.T, srv *runner.Server) jobpb.JobState_Enum {
	t.Helper()
	jobs := srv.Jobs().Jobs()
	if len(jobs) != 1 {
		t.Fatalf("server has %d jobs, want 1", len(jobs))
	}
	return jobs[0].State()
}

// badPipeline is a real Go SDK pipeline proto broken by mutate.
func badPipeline(t *testing.T, mutate func(t *testing.T, p *pipepb.Pipeline) string) (*pipepb.Pipeline, string) {
	t.Helper()
	p, s := beam.NewPipelineWithRoot()
	beam.ParDo(s, alwaysFail, beam.Create(s, 1, 2, 3))
	edges, _, err := p.Build()
	if err != nil {
		t.Fatalf("building pipeline: %v", err)
	}
	env, err := graphx.CreateEnvironment(context.Background(), graphx.URNEnvExternal, func(context.Context) string { return "localhost:1" })
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := graphx.Marshal(edges, &graphx.Options{Environment: env})
	if err != nil {
		t.Fatalf("marshalling pipeline: %v", err)
	}
	return pipe, mutate(t, pipe)
}

func transformNamed(t *testing.T, p *pipepb.Pipeline, name string) *pipepb.PTransform {
	t.Helper()
	for _, tr := range p.GetComponents().GetTransforms() {
		if tr.GetUniqueName() == name {
			return tr
		}
	}
	t.Fatalf("no transform named %q", name)
	return nil
}

// TestRejectedPipelines submits pipelines weir cannot run through Beam's
// own job client: Prepare must fail with InvalidArgument and say what is
// wrong, and runnerlib (what --runner=universal uses) must hand that
// message to the user. Nothing runs.
func TestRejectedPipelines(t *testing.T) {
	const badURN = "beam:transform:weir_test_unknown:v1"
	const badCoder = "beam:coder:weir_test_unknown:v1"
	tests := []struct {
		name   string
		mutate func(t *testing.T, p *pipepb.Pipeline) string // returns what the error must name
		want   []string
	}{
		{
			name: "unknown transform URN",
			mutate: func(t *testing.T, p *pipepb.Pipeline) string {
				transformNamed(t, p, "runner_test.alwaysFail").Spec.Urn = badURN
				return `transform "runner_test.alwaysFail"`
			},
			want: []string{badURN},
		},
		{
			// Any other unknown coder is opaque bytes to weir; a window
			// coder weir must decode.
			name: "unknown window coder",
			mutate: func(t *testing.T, p *pipepb.Pipeline) string {
				for _, pc := range transformNamed(t, p, "runner_test.alwaysFail").GetOutputs() {
					ws := p.GetComponents().GetWindowingStrategies()[p.GetComponents().GetPcollections()[pc].GetWindowingStrategyId()]
					p.GetComponents().GetCoders()[ws.GetWindowCoderId()].Spec.Urn = badCoder
					return fmt.Sprintf("window coder %q", ws.GetWindowCoderId())
				}
				t.Fatal("alwaysFail has no output")
				return ""
			},
			want: []string{badCoder, "window fn"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startWeir(t, 1)
			pipe, names := badPipeline(t, tc.mutate)
			want := append([]string{names}, tc.want...)

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cc, err := grpc.NewClient(srv.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			_, err = jobpb.NewJobServiceClient(cc).Prepare(ctx, &jobpb.PrepareJobRequest{Pipeline: pipe, JobName: "rejected"})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("Prepare = %v, want InvalidArgument", err)
			}
			for _, w := range want {
				if !strings.Contains(status.Convert(err).Message(), w) {
					t.Errorf("Prepare error %q does not name %q", status.Convert(err).Message(), w)
				}
			}

			_, err = runnerlib.Execute(ctx, pipe, srv.Endpoint(), &runnerlib.JobOptions{Name: "rejected", Loopback: true}, false)
			if err == nil {
				t.Fatal("runnerlib.Execute succeeded, want the Prepare error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("runnerlib.Execute error %q does not name %q", err, w)
				}
			}
			if n := len(srv.Jobs().Jobs()); n != 0 {
				t.Errorf("server has %d jobs after rejecting the pipeline, want 0", n)
			}
		})
	}
}

// TestUserErrorFailsJob: a DoFn that always fails makes the job FAILED
// after a bounded number of attempts (no hang), and the client sees the
// user's error message.
func TestUserErrorFailsJob(t *testing.T) {
	srv := startWeir(t, 1)
	alwaysFailCalls.Store(0)
	p, s := beam.NewPipelineWithRoot()
	beam.ParDo(s, alwaysFail, beam.Create(s, 1, 2, 3))

	start := time.Now()
	err := runOn(t, srv, p, "loopback")
	if err == nil {
		t.Fatal("job succeeded, want it to fail")
	}
	t.Logf("job failed after %v: %v", time.Since(start), err)
	if !strings.Contains(err.Error(), failureMessage) {
		t.Errorf("client error %q does not contain the DoFn's message %q", err, failureMessage)
	}
	if st := onlyJob(t, srv); st != jobpb.JobState_FAILED {
		t.Errorf("job state %v, want FAILED", st)
	}
	// One bundle (parallelism 1, fused with Create), failing at its first
	// element each attempt: the calls are the attempts, and the error says
	// how many there were.
	calls := alwaysFailCalls.Load()
	if calls < 2 || calls > 10 {
		t.Errorf("alwaysFail was called %d times, want a few retries (2..10)", calls)
	}
	m := regexp.MustCompile(`failed after (\d+) attempts`).FindStringSubmatch(err.Error())
	if m == nil || m[1] != strconv.FormatInt(calls, 10) {
		t.Errorf("client error %q does not report %d attempts", err, calls)
	}
}

// TestUserErrorRetried: a DoFn that fails once, mid-bundle and after
// emitting output, succeeds on retry; the sums downstream show that the
// failed attempt's output was dropped, not added.
func TestUserErrorRetried(t *testing.T) {
	srv := startWeir(t, 2)
	failedOnce.Store(false)
	if err := runOn(t, srv, sumsPipeline(failOnce), "loopback"); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	if !failedOnce.Load() {
		t.Fatal("failOnce never failed: the test did not exercise a retry")
	}
	if st := onlyJob(t, srv); st != jobpb.JobState_DONE {
		t.Errorf("job state %v, want DONE", st)
	}
}

// TestWorkerCrashRestarts runs the PROCESS environment with this test
// binary as the staged worker: a DoFn kills its worker process mid-bundle;
// weir must start a new worker, rerun the lost bundles there, and produce
// exactly the right sums.
func TestWorkerCrashRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("stages this test binary as a worker")
	}
	srv := startWeir(t, 2)
	marker := filepath.Join(t.TempDir(), "crashed")
	if err := runOn(t, srv, sumsPipeline(&crashOnceFn{Marker: marker}), "process"); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no crash marker: the worker never crashed (%v)", err)
	}
	t.Logf("worker %s", strings.TrimSpace(string(b)))
	if st := onlyJob(t, srv); st != jobpb.JobState_DONE {
		t.Errorf("job state %v, want DONE", st)
	}
}

// TestHungWorkerReplaced freezes the PROCESS worker mid-bundle: weir's
// liveness check must notice that it stopped answering, kill it, and rerun
// its bundles on a new worker, with exactly the right sums.
func TestHungWorkerReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("stages this test binary as a worker")
	}
	srv := startWeirWith(t, runner.Config{Parallelism: 2, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Second})
	marker := filepath.Join(t.TempDir(), "hung")
	if err := runOn(t, srv, sumsPipeline(&hangOnceFn{Marker: marker}), "process"); err != nil {
		t.Fatalf("job failed: %v", err)
	}
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no hang marker: the worker never hung (%v)", err)
	}
	t.Logf("worker %s", strings.TrimSpace(string(b)))
	if st := onlyJob(t, srv); st != jobpb.JobState_DONE {
		t.Errorf("job state %v, want DONE", st)
	}
}
