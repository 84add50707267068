package metamorphic

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
)

var (
	flagSeeds    = flag.Int("seeds", 60, "how many seeds TestMetamorphic runs (seed_base, seed_base+1, ...)")
	flagSeedBase = flag.Uint64("seed_base", 1, "the first seed")
	flagSeed     = flag.Uint64("seed", 0, "run only this seed (0: -seeds seeds from -seed_base)")
	flagBig      = flag.Bool("big", false, "allow big sizes: up to a million elements and keys")
	flagShrink   = flag.Bool("shrink", true, "shrink a failing seed to a smaller failing variant")
	flagKeep     = flag.String("keep", "", "keep each run's files (sinks, manifest, checkpoints) under this directory")
	flagTimeout  = flag.Duration("job_timeout", 0, "a job not done by then has hung (0: 60s, 20m with -big)")
)

// TestMain initialises Beam, with the runner tests' temp-dir handling.
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// runnerlib leaves a placeholder file in os.TempDir() for every
	// LOOPBACK job: keep them in a directory removed at exit.
	if dir, err := os.MkdirTemp("", "weir-metamorphic-"); err == nil {
		os.Setenv("TMPDIR", dir)
		defer os.RemoveAll(dir)
	}
	beamlog.SetLogger(quietLogger{})
	// The Go SDK's harness also logs through slog's default logger.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	return ptest.MainRetWithDefault(m, "weir")
}

// quietLogger drops the Go SDK's informational messages (a few per job).
type quietLogger struct{}

func (quietLogger) Log(ctx context.Context, sev beamlog.Severity, calldepth int, msg string) {
	if sev >= beamlog.SevWarn {
		fmt.Fprintf(os.Stderr, "beam %v: %s\n", sev, msg)
	}
}

// TestMetamorphic runs generated pipelines on weir and compares what their
// sinks committed with the model.
func TestMetamorphic(t *testing.T) {
	seeds := []uint64{*flagSeed}
	if *flagSeed == 0 {
		seeds = seeds[:0]
		for i := 0; i < *flagSeeds; i++ {
			seeds = append(seeds, *flagSeedBase+uint64(i))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			start := time.Now()
			spec, set := Generate(seed, Options{Big: *flagBig})
			o := run(t, spec, set)
			t.Logf("seed %d: %s in %v (%d source elements, %d ops, %d sinks; %s)", seed, o.verdict(), time.Since(start).Round(time.Millisecond), spec.Size(), len(spec.Ops), len(spec.Sinks), set)
			if len(o.notes) > 0 {
				t.Logf("notes: %s", strings.Join(o.notes, "; "))
			}
			if !o.failed() {
				return
			}
			t.Errorf("seed %d failed: %s\nsettings: %s\npipeline:\n%s%s\nreplay: %s", seed, o.verdict(), set, spec.Describe(), o.report(), replay(seed))
			if *flagShrink {
				shrink(t, spec, set, o)
			}
		})
	}
}

func replay(seed uint64) string {
	big := ""
	if *flagBig {
		big = " -big"
	}
	return fmt.Sprintf("go test ./conformance/metamorphic -run 'TestMetamorphic/seed=%d$' -seed=%d%s -v", seed, seed, big)
}

// outcome is what one run found.
type outcome struct {
	jobErr    error
	hung      bool
	diffs     []SinkDiff
	problems  []problem // everything else that is wrong
	notes     []string  // what is worth knowing but not wrong
	restarts  int64
	committed *Committed
}

// problem is something wrong besides the sinks' records; kind groups
// problems for shrinking, which keeps a variant only if it fails the same
// way.
type problem struct{ kind, msg string }

func (o *outcome) problem(kind, format string, args ...any) {
	o.problems = append(o.problems, problem{kind, fmt.Sprintf(format, args...)})
}

func (o *outcome) failed() bool {
	return o.jobErr != nil || len(o.diffs) > 0 || len(o.problems) > 0
}

// class is the kind of the run's first failure.
func (o *outcome) class() string {
	switch {
	case o.hung:
		return "hang"
	case o.jobErr != nil:
		return "job error"
	case len(o.diffs) > 0:
		return "diff"
	case len(o.problems) > 0:
		return o.problems[0].kind
	}
	return ""
}

func (o *outcome) verdict() string {
	switch {
	case o.hung:
		return "job hung"
	case o.jobErr != nil:
		return "job failed"
	case len(o.diffs) > 0:
		return fmt.Sprintf("%d sinks differ from the model", len(o.diffs))
	case len(o.problems) > 0:
		return o.problems[0].msg
	}
	return "ok"
}

func (o *outcome) report() string {
	var b strings.Builder
	if o.jobErr != nil {
		fmt.Fprintf(&b, "job error: %v\n", o.jobErr)
	}
	if len(o.diffs) > 0 {
		b.WriteString("diff (committed vs model):\n")
		b.WriteString(FormatDiff(o.diffs, 10))
	}
	for _, p := range o.problems {
		fmt.Fprintf(&b, "problem: %s\n", p.msg)
	}
	for _, n := range o.notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	return b.String()
}

// fault fails the job once, the nth time it reaches point.
type fault struct {
	point string
	n     int64
	seen  atomic.Int64
	fired atomic.Bool
}

func (f *fault) inject(point string, _ int64) error {
	if f == nil || point != f.point || f.fired.Load() {
		return nil
	}
	if f.seen.Add(1) == f.n && f.fired.CompareAndSwap(false, true) {
		return fmt.Errorf("metamorphic: injected fault at %s #%d", f.point, f.n)
	}
	return nil
}

// testLog forwards a server's logs to the test until the run ends.
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

func (l *testLog) close() {
	l.mu.Lock()
	l.done = true
	l.mu.Unlock()
}

var runs atomic.Int64

// strict, set by TestRepro when it runs a named case, makes known bugs
// fail runs again.
var strict bool

// tolerate reports whether a run forgives what a known bug does.
func tolerate(knownBug bool) bool { return knownBug && !strict }

// logLevel is the level of weir's log in the test log: $WEIR_LOG_LEVEL, or
// warnings.
func logLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("WEIR_LOG_LEVEL"))); err != nil {
		return slog.LevelWarn
	}
	return l
}

// run runs spec with settings on a new weir server and checks the result.
func run(t *testing.T, spec *Spec, set Settings) *outcome {
	t.Helper()
	o := &outcome{}
	want, err := spec.Expected()
	if err != nil {
		t.Fatalf("model: %v", err)
	}
	n := runs.Add(1)
	base := *flagKeep
	if base == "" {
		base = t.TempDir()
	}
	dir := filepath.Join(base, fmt.Sprintf("seed%d-run%d", spec.Seed, n))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer forgetFinalizers(dir)
	job := fmt.Sprintf("metamorphic-%d-%d", spec.Seed, n)
	if set.Kill {
		if generated(spec) {
			return runKilled(t, spec, set, dir, job, want, o)
		}
		o.notes = append(o.notes, "a variant its seed does not generate: run without the kill")
		set.Kill = false
	}
	token := fmt.Sprintf("seed%d-run%d", spec.Seed, n)
	p, failable, err := Build(spec, dir, set.FailOp, set.FailAt, token)
	if err != nil {
		t.Fatalf("building the pipeline: %v", err)
	}
	defer failFired(token)

	var restarts atomic.Int64
	tl := &testLog{t: t}
	defer tl.close()
	cfg, f := weirConfig(set, dir, tl, &restarts)
	if err := os.MkdirAll(cfg.TempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := runner.Start(cfg)
	if err != nil {
		t.Fatalf("runner.Start: %v", err)
	}
	stop := sync.OnceFunc(srv.Stop)
	t.Cleanup(stop)
	defer stop()

	o.jobErr, o.hung = runJob(srv, p, job, jobTimeout(spec, set))
	if o.jobErr != nil && !o.hung && spec.splitErr() && strings.Contains(o.jobErr.Error(), SplitErrMsg) {
		o.notes = append(o.notes, "the job failed with the injected split error, as it may")
		o.jobErr = nil
		return o
	}
	if o.jobErr != nil {
		return o
	}
	o.restarts = restarts.Load()
	o.check(t, spec, set, dir, want)
	if f != nil {
		switch fired := f.fired.Load(); {
		case !fired:
			o.problem("fault", "fault %s #%d was drawn but did not fire (reached %d times)", f.point, f.n, f.seen.Load())
		case o.restarts == 0:
			// A fault that fires as the job ends fails nothing left to run.
			o.notes = append(o.notes, fmt.Sprintf("fault %s #%d fired but the job never restarted", f.point, f.n))
		}
	}
	if failable {
		calls, sure := opCalls(spec, set.FailOp)
		if fired := failFired(token); !fired && sure && calls >= set.FailAt {
			o.problem("fail", "injected failure of op %d at element %d did not fire (the op sees %d elements)", set.FailOp, set.FailAt, calls)
		} else if fired {
			o.notes = append(o.notes, fmt.Sprintf("injected bundle failure of op %d fired", set.FailOp))
		}
	}
	return o
}

// weirConfig is the embedded weir of a run of set in dir, logging to log;
// restarts counts the job's restarts, and f is the checkpoint fault drawn
// (nil if none).
func weirConfig(set Settings, dir string, log io.Writer, restarts *atomic.Int64) (cfg runner.Config, f *fault) {
	cfg = runner.Config{
		Parallelism: set.Parallelism,
		InProcess:   set.InProcess,
		TempDir:     filepath.Join(dir, "weir"),
		Logger:      slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: logLevel()})),
		Limits: engine.Limits{
			TimersPerFiring:     set.TimersPerFiring,
			BundleBytes:         set.BundleBytes,
			StatefulBundleBytes: set.StatefulBundleBytes,
			BundleOutputBytes:   set.BundleOutputBytes,
			MessageBytes:        set.MessageBytes,
			InboxSize:           set.InboxSize,
			StateChunkBytes:     set.StateChunkBytes,
			SplitCheck:          set.SplitCheck,
			BundleTime:          set.BundleTime,
			RestoreWorkers:      set.RestoreWorkers,
		},
	}
	if set.Checkpoint > 0 {
		cfg.Checkpoints = runner.CheckpointConfig{
			Dir: "file://" + filepath.Join(dir, "chk"), Interval: set.Checkpoint,
			Retained: 2, RestartAttempts: 2, RestartBackoff: 10 * time.Millisecond,
		}
		cfg.OnRestart = func(string) {
			restarts.Add(1)
			incarnation(dir).Add(1)
		}
		if set.Fault != "" {
			f = &fault{point: set.Fault, n: set.FaultN}
			cfg.CheckpointFault = f.inject
		}
	}
	return cfg, f
}

// check reads what the sinks of the run in dir committed and compares it
// with want and the manifest's and finalizations' rules.
func (o *outcome) check(t *testing.T, spec *Spec, set Settings, dir string, want map[string]map[string]int) {
	t.Helper()
	c, err := readCommitted(dir, spec)
	if err != nil {
		t.Fatalf("reading the sinks: %v", err)
	}
	o.committed = c
	o.diffs = Diff(want, c.Records)
	for _, p := range c.Problems {
		o.problem("manifest", "%s", p)
	}
	if c.ManifestPanes > 1 {
		msg := fmt.Sprintf("the manifest GroupByKey (global window, default trigger) emitted %d panes, want 1", c.ManifestPanes)
		if tolerate(knownBugLatePaneAtWindowEnd) {
			o.notes = append(o.notes, msg+" (knownBugLatePaneAtWindowEnd)")
		} else {
			o.problem("panes", "%s", msg)
		}
	}
	if len(c.Uncommitted) > 0 {
		o.problem("finalize", "%d bundles finalized that never committed, e.g. %s", len(c.Uncommitted), c.Uncommitted[0])
	}
	if len(c.Unfinalized) > 0 {
		msg := fmt.Sprintf("%d of %d committed bundles never finalized, e.g. %s", len(c.Unfinalized), c.Bundles, c.Unfinalized[0])
		switch {
		case o.restarts > 0:
			o.notes = append(o.notes, msg+" (the job restarted: finalizations pending at the failure are lost)")
		case set.Checkpoint > 0 && tolerate(knownBugFinalizeLost):
			o.notes = append(o.notes, msg+" (knownBugFinalizeLost)")
		default:
			o.problem("finalize", "%s", msg)
		}
	}
	if c.Stale > 0 {
		o.notes = append(o.notes, fmt.Sprintf("%d committed bundles ran on an SDK plan whose finalizer had already run (their callbacks are lost in the Go SDK)", c.Stale))
	}
}

// splitErr reports whether a source of s refuses splits with an error.
func (s *Spec) splitErr() bool {
	for _, op := range s.Ops {
		if g, ok := op.Step.(GenSource); ok && g.SplitErr {
			return true
		}
	}
	return false
}

// jobTimeout is how long a job of spec may run with set before it counts
// as hung: a minute (20 with -big), and 10 ms more for each timer bundle
// it needs at least (a tiny TimersPerFiring over thousands of timers
// fires thousands of one-timer bundles: slow, not hung).
func jobTimeout(spec *Spec, set Settings) time.Duration {
	if *flagTimeout != 0 {
		return *flagTimeout
	}
	base := time.Minute
	if *flagBig {
		base = 20 * time.Minute
	}
	per := set.TimersPerFiring
	if per <= 0 {
		per = engine.DefaultLimits.TimersPerFiring
	}
	return base + time.Duration(timerFirings(spec)/int64(per))*10*time.Millisecond
}

// timerFirings bounds from above how many timers spec's stateful DoFns
// fire: at most one per element they emit.
func timerFirings(spec *Spec) int64 {
	elems, err := spec.Eval()
	if err != nil {
		return 0
	}
	var n int64
	for _, op := range spec.Ops {
		if _, ok := op.Step.(Stateful); ok {
			for _, c := range op.Out {
				n += int64(len(elems[c]))
			}
		}
	}
	return n
}

// runJob runs p against srv as a user would: --runner=weir with srv's
// endpoint and LOOPBACK workers.
func runJob(srv *runner.Server, p *beam.Pipeline, name string, timeout time.Duration) (err error, hung bool) {
	saved := []*string{jobopts.Endpoint, jobopts.EnvironmentType, jobopts.JobName}
	old := make([]string, len(saved))
	for i, f := range saved {
		old[i] = *f
	}
	defer func() {
		for i, f := range saved {
			*f = old[i]
		}
	}()
	*jobopts.Endpoint, *jobopts.EnvironmentType, *jobopts.JobName = srv.Endpoint(), "loopback", name
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err = beam.Run(ctx, "weir", p)
	if ctx.Err() != nil {
		return fmt.Errorf("job did not end within %v (%v)", timeout, err), true
	}
	return err, false
}

// opCalls is how many times the DoFn of op id processes an element (or a
// source emits one), and whether that is certain (a DoFn that does not
// observe windows sees an element in several windows once).
func opCalls(spec *Spec, id int) (int64, bool) {
	elems, err := spec.Eval()
	if err != nil {
		return 0, false
	}
	for _, op := range spec.Ops {
		if op.ID != id {
			continue
		}
		switch st := op.Step.(type) {
		case GenSource:
			return st.N, true
		case ImpulseSource:
			return st.N, true
		case ImpulseTwins:
			return st.A.N, true
		case GroupByKey, CoGroupByKey:
			return int64(len(elems[op.Out[0]])), true
		case Stateful, SideInput:
			return int64(len(elems[op.In[0]])), true
		}
		in := spec.Colls[op.In[0]]
		return int64(len(elems[op.In[0]])), !in.Multi
	}
	return 0, false
}

// shrink reruns smaller variants of a failing run and reports the
// smallest that still fails.
func shrink(t *testing.T, spec *Spec, set Settings, o *outcome) {
	deadline := time.Now().Add(3 * time.Minute)
	budget := 40
	class := o.class()
	try := func(v Variant) (*outcome, bool) {
		if budget == 0 || time.Now().After(deadline) {
			return nil, false
		}
		if _, err := v.Spec.Expected(); err != nil {
			return nil, false // the smaller input breaks a precondition
		}
		budget--
		vo := run(t, v.Spec, v.Settings)
		t.Logf("shrink: %s: %s", v.Why, vo.verdict())
		return vo, vo.class() == class
	}
	var steps []string
	for _, v := range prefixVariants(spec, set) {
		if vo, ok := try(v); ok {
			spec, set, o = v.Spec, v.Settings, vo
			steps = append(steps, v.Why)
			break
		}
	}
	for progress := true; progress; {
		progress = false
		for _, v := range smallerVariants(spec, set) {
			if vo, ok := try(v); ok {
				spec, set, o = v.Spec, v.Settings, vo
				steps = append(steps, v.Why)
				progress = true
				break
			}
		}
	}
	if len(steps) == 0 {
		t.Logf("shrink: no smaller variant fails")
		return
	}
	t.Errorf("smallest failing variant (%s): %s\nsettings: %s\npipeline (%d source elements):\n%s%s", strings.Join(steps, "; "), o.verdict(), set, spec.Size(), spec.Describe(), o.report())
}
