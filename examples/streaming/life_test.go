package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	weir "github.com/weir-runner/weir/runner"
	"github.com/weir-runner/weir/runner/engine"
	"github.com/weir-runner/weir/savepoint/inspect"
)

// lifeLines are the lines each run of TestLifeOfAJob printed, by run.
var lifeLines = struct {
	sync.Mutex
	byRun map[string][]string
}{byRun: map[string][]string{}}

// lifeSinkFn records the lines of run Run (in this process: LOOPBACK).
type lifeSinkFn struct{ Run string }

func (fn *lifeSinkFn) ProcessElement(line string) {
	lifeLines.Lock()
	defer lifeLines.Unlock()
	lifeLines.byRun[fn.Run] = append(lifeLines.byRun[fn.Run], line)
}

func init() { register.DoFn1x0[string](&lifeSinkFn{}) }

// velocityKey is an account and the end of a window.
type velocityKey struct {
	acct string
	end  int64
}

// expectedVelocity counts the whole stream's transactions by account and
// window (what version 2 judges against its limit).
func expectedVelocity(o Options) map[velocityKey]int64 {
	w := o.Window.Milliseconds()
	counts := map[velocityKey]int64{}
	for i := int64(0); i < o.Spec.Events; i++ {
		t := MakeTxn(o.Spec, i)
		counts[velocityKey{t.Account, t.Millis - t.Millis%w + w}]++
	}
	return counts
}

// TestLifeOfAJob is the example's walkthrough as a test: version 1 runs on
// parallelism 2 with checkpoints; mid-stream it is stopped with a
// savepoint, as SIGTERM does (stopWithSavepoint); version 2, with the
// velocity check added, starts from the savepoint on parallelism 3 and
// runs to the end of the stream. Together they print exactly the lines
// one uninterrupted run of version 1 prints (the model, expected): the
// balances, open periods and windows were restored, the sources went on
// where they stopped, and nothing was printed twice. The new stateful
// check starts empty: for every window that opened after the savepoint
// its lines are the model's.
func TestLifeOfAJob(t *testing.T) {
	if testing.Short() {
		t.Skip("runs streaming jobs for seconds")
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	checkpointed := make(chan struct{}, 1)
	spDir := t.TempDir()
	v1srv, err := weir.Start(weir.Config{Parallelism: 2, InProcess: true, Logger: logger,
		Checkpoints: weir.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointDir: "file://" + spDir},
		OnCheckpoint: func(_ string, s engine.CheckpointStats) {
			if s.Failed == "" {
				select {
				case checkpointed <- struct{}{}:
				default:
				}
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer v1srv.Stop()
	endpoint, env, name := *jobopts.Endpoint, *jobopts.EnvironmentType, *jobopts.JobName
	defer func() { *jobopts.Endpoint, *jobopts.EnvironmentType, *jobopts.JobName = endpoint, env, name }()
	*jobopts.Endpoint, *jobopts.EnvironmentType = v1srv.Endpoint(), "loopback"
	*jobopts.JobName = fmt.Sprintf("cards-%d", time.Now().UnixNano())

	o := Options{
		Spec: GenSpec{
			StartMillis:    time.Now().UnixMilli(),
			IntervalMicros: 5_000, // 200 transactions a second for 4 s
			Accounts:       3,
			Events:         800,
			Shards:         1,
		},
		Paced:   true,
		Tick:    20 * time.Millisecond,
		Window:  500 * time.Millisecond,
		Opening: 2000,
	}
	done := make(chan error, 1)
	go func() { done <- runLife(o, "v1") }()
	select {
	case <-checkpointed:
	case err := <-done:
		t.Fatalf("version 1 ended before its first checkpoint: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("version 1 took no checkpoint in a minute")
	}
	// Mid-stream: once version 1 has printed something (a window fired).
	for printed := false; !printed; {
		select {
		case err := <-done:
			t.Fatalf("version 1 ended before it was stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		lifeLines.Lock()
		printed = len(lifeLines.byRun["v1"]) > 0
		lifeLines.Unlock()
	}
	path, err := stopWithSavepoint(v1srv.Endpoint(), *jobopts.JobName)
	if err != nil {
		t.Fatalf("stopping version 1 with a savepoint: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("version 1, stopped with a savepoint: %v", err)
	}
	sp, err := inspect.OpenURL(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	taken := sp.Metadata().Created
	sp.Close()
	t.Logf("version 1 stopped with savepoint %s, taken %v into the stream", path, taken.Sub(time.UnixMilli(o.Spec.StartMillis)))

	lifeLines.Lock()
	v1 := slices.Clone(lifeLines.byRun["v1"])
	lifeLines.Unlock()
	if os.Getenv("WEIR_WRITE_GOLDEN_SAVEPOINT") != "" {
		writeGoldenLife(t, path, o, v1)
	}
	o2, v2 := runVersion2(t, logger, o, path, "v2")
	checkLife(t, o, o2, taken, v1, v2)
}

// runVersion2 runs version 2 (the velocity check added) from the
// savepoint at path on 3 subtasks, to the end of o's stream, and returns
// its options and the lines it printed (run label).
func runVersion2(t *testing.T, logger *slog.Logger, o Options, path, label string) (Options, []string) {
	counts := expectedVelocity(o)
	var all []int64
	for _, n := range counts {
		all = append(all, n)
	}
	slices.Sort(all)
	o2 := o
	o2.Velocity = int(all[len(all)/2])
	srv, err := weir.Start(weir.Config{Parallelism: 3, InProcess: true, Logger: logger,
		Checkpoints: weir.CheckpointConfig{Dir: "file://" + t.TempDir(), Interval: 100 * time.Millisecond, Retained: 1, SavepointPath: path}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	defer setEndpoint(srv.Endpoint())()
	if err := runLife(o2, label); err != nil {
		t.Fatalf("version 2, started from the savepoint: %v", err)
	}
	lifeLines.Lock()
	defer lifeLines.Unlock()
	return o2, slices.Clone(lifeLines.byRun[label])
}

// setEndpoint points jobs at endpoint until the returned func is called.
func setEndpoint(endpoint string) func() {
	old := *jobopts.Endpoint
	*jobopts.Endpoint = endpoint
	return func() { *jobopts.Endpoint = old }
}

// runLife runs the example's pipeline with options o, its lines recorded
// under label.
func runLife(o Options, label string) error {
	p, s := beam.NewPipelineWithRoot()
	out := Build(s, o)
	for _, lines := range []beam.PCollection{out.Windows, out.Alerts, out.Summaries, out.Velocity} {
		if lines.IsValid() {
			beam.ParDo0(s.Scope("Print"), &lifeSinkFn{Run: label}, lines)
		}
	}
	return ptest.Run(p)
}

// checkLife compares what versions 1 (options o) and 2 (o2) printed with
// the model of one uninterrupted run; the velocity lines exactly for the
// windows that opened a window after the savepoint was taken.
func checkLife(t *testing.T, o, o2 Options, taken time.Time, v1, v2 []string) {
	t.Helper()
	counts := expectedVelocity(o)
	var got, velocity []string
	for _, l := range append(slices.Clone(v1), v2...) {
		if strings.HasPrefix(l, "VELOCITY ") {
			velocity = append(velocity, l)
			continue
		}
		got = append(got, l)
	}
	wantWindows, wantAlerts, wantSummaries := expected(o)
	want := append(append(append([]string{}, wantWindows...), wantAlerts...), wantSummaries...)
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("versions 1 and 2 printed %d lines (%d and %d), an uninterrupted run %d; first differences:\n%s",
			len(got), len(v1), len(v2), len(want), firstDiffs(got, want, 10))
	}
	if len(v1) == 0 || len(v2) == 0 {
		t.Errorf("version 1 printed %d lines, version 2 %d: the stop was not mid-stream", len(v1), len(v2))
	}
	// Velocity: no window counts more than it had; windows opened after
	// the savepoint (with a window's margin) count exactly.
	w := o.Window.Milliseconds()
	exact := 0
	ends := map[string]velocityKey{}
	for k, n := range counts {
		ends[k.acct+" "+clockMillis(k.end)] = k
		if n > int64(o2.Velocity) && k.end-w >= taken.UnixMilli()+w {
			exact++
			if line := FormatVelocity(k.acct, k.end, n); !slices.Contains(velocity, line) {
				t.Errorf("version 2 did not print %q", line)
			}
		}
	}
	for _, l := range velocity {
		var acct, end string
		var n int64
		if _, err := fmt.Sscanf(l, "VELOCITY %s %d transactions in the window to %s", &acct, &n, &end); err != nil {
			t.Fatalf("velocity line %q: %v", l, err)
		}
		k, ok := ends[strings.TrimSuffix(acct, ":")+" "+end]
		if m := counts[k]; !ok || n > m || n <= int64(o2.Velocity) {
			t.Errorf("%q: the window had %d transactions (limit %d)", l, m, o2.Velocity)
		}
	}
	t.Logf("version 1: %d lines, version 2: %d lines, %d velocity lines (%d in windows after the savepoint checked exactly)", len(v1), len(v2), len(velocity), exact)
}

// firstDiffs lists up to n lines in one sorted list and not the other.
func firstDiffs(got, want []string, n int) string {
	var out []string
	for i, j := 0, 0; (i < len(got) || j < len(want)) && len(out) < n; {
		switch {
		case j == len(want) || i < len(got) && got[i] < want[j]:
			out = append(out, "+ "+got[i])
			i++
		case i == len(got) || want[j] < got[i]:
			out = append(out, "- "+want[j])
			j++
		default:
			i, j = i+1, j+1
		}
	}
	return strings.Join(out, "\n")
}

// goldenLife is where TestLifeOfAJob keeps a savepoint of version 1 with
// WEIR_WRITE_GOLDEN_SAVEPOINT=1: the savepoint, the options of its run and
// the lines version 1 printed before it (TestGoldenLifeRestores).
const goldenLife = "testdata/savepoints"

type goldenRun struct {
	Options Options
	Taken   time.Time
	Lines   []string
}

func writeGoldenLife(t *testing.T, path string, o Options, v1 []string) {
	sp, err := inspect.OpenURL(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	taken := sp.Metadata().Created
	sp.Close()
	if err := os.RemoveAll(goldenLife); err != nil {
		t.Fatal(err)
	}
	dir := strings.TrimPrefix(path, "file://")
	if err := os.CopyFS(filepath.Join(goldenLife, filepath.Base(dir)), os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	b, err := json.MarshalIndent(goldenRun{Options: o, Taken: taken, Lines: v1}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(goldenLife, "run.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestGoldenLifeRestores: the savepoint of version 1 written by an earlier
// build (its ordered-list and value state with timers, the window
// GroupByKeys' buffers and combiner state, the source's position) still
// restores into version 2, and together they print exactly the model's
// lines. Every later build must pass with the files as they are.
func TestGoldenLifeRestores(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a streaming job")
	}
	b, err := os.ReadFile(filepath.Join(goldenLife, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenRun
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob(filepath.Join(goldenLife, "savepoint-*"))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("want one golden savepoint in %s, found %v (%v)", goldenLife, dirs, err)
	}
	abs, err := filepath.Abs(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	endpoint, env := *jobopts.Endpoint, *jobopts.EnvironmentType
	defer func() { *jobopts.Endpoint, *jobopts.EnvironmentType = endpoint, env }()
	*jobopts.EnvironmentType = "loopback"
	o2, v2 := runVersion2(t, slog.New(slog.NewTextHandler(io.Discard, nil)), g.Options, "file://"+abs, "golden-v2")
	checkLife(t, g.Options, o2, g.Taken, g.Lines, v2)
}
