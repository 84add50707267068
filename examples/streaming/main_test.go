package main

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"

	weir "github.com/weir-runner/weir/runner"
)

// TestMain runs this package's pipelines on embedded weir.
func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// runnerlib leaves a placeholder file in os.TempDir() for every
	// LOOPBACK job: keep them in a directory removed at exit.
	if dir, err := os.MkdirTemp("", "weir-streaming-test-"); err == nil {
		os.Setenv("TMPDIR", dir)
		defer os.RemoveAll(dir)
	}
	return ptest.MainRetWithDefault(m, "weir")
}

// testOptions is a bounded stream: 600 transactions 137 ms apart (82 s of
// event time, eight 10 s windows) over 5 accounts, emitted at once.
func testOptions(shards int) Options {
	return Options{
		Spec: GenSpec{
			StartMillis:    time.Date(2024, 3, 1, 9, 0, 3, 0, time.UTC).UnixMilli(),
			IntervalMicros: 137_000,
			Accounts:       5,
			Events:         600,
			Shards:         shards,
		},
		Window:  10 * time.Second,
		Opening: 5000,
	}
}

// expected computes the pipeline's output directly from the transactions.
func expected(o Options) (windows, alerts, summaries []string) {
	w := o.Window.Milliseconds()
	type win struct {
		counts map[string]int
		net    int64
	}
	wins := map[int64]*win{}
	type account struct {
		balance int64
		end     int64 // end of the period being summed
		txns    int
	}
	accts := map[string]*account{}
	flush := func(name string, a *account) {
		if a.txns > 0 {
			summaries = append(summaries, FormatSummary(Summary{Account: name, EndMillis: a.end, Txns: a.txns, Balance: a.balance}))
		}
	}
	for i := int64(0); i < o.Spec.Events; i++ {
		t := MakeTxn(o.Spec, i)
		start := t.Millis - t.Millis%w
		if wins[start] == nil {
			wins[start] = &win{counts: map[string]int{}}
		}
		wins[start].counts[t.Merchant]++
		wins[start].net += t.Cents

		a := accts[t.Account]
		if a == nil {
			a = &account{balance: o.Opening}
			accts[t.Account] = a
		}
		if end := start + w; end != a.end {
			flush(t.Account, a)
			a.end, a.txns = end, 0
		}
		before := a.balance
		a.balance += t.Cents
		a.txns++
		if before >= 0 && a.balance < 0 {
			alerts = append(alerts, FormatAlert(Alert{Account: t.Account, Txn: t, Balance: a.balance}))
		}
	}
	for name, a := range accts {
		flush(name, a)
	}
	for start, x := range wins {
		var cs []merchantCount
		for m, n := range x.counts {
			cs = append(cs, merchantCount{m, n})
		}
		windows = append(windows, FormatWindow(start, start+w, cs, x.net))
	}
	sort.Strings(windows)
	return windows, alerts, summaries
}

// TestBounded runs the example's pipeline on a bounded stream, not paced,
// and checks every line it would print. Sharding the source differently
// must not change anything.
func TestBounded(t *testing.T) {
	wantWindows, wantAlerts, wantSummaries := expected(testOptions(1))
	if len(wantWindows) != 9 || len(wantAlerts) == 0 || len(wantSummaries) < 5*8 {
		t.Fatalf("test data too thin: %d windows, %d alerts, %d summaries", len(wantWindows), len(wantAlerts), len(wantSummaries))
	}
	for _, shards := range []int{1, 3} {
		t.Run(fmt.Sprintf("shards=%d", shards), func(t *testing.T) {
			p, s := beam.NewPipelineWithRoot()
			out := Build(s, testOptions(shards))
			// The window lines are in their windows; passert wants the global one.
			windows := beam.WindowInto(s, window.NewGlobalWindows(), out.Windows)
			passert.EqualsList(s.Scope("windows"), windows, wantWindows)
			passert.EqualsList(s.Scope("alerts"), out.Alerts, wantAlerts)
			passert.EqualsList(s.Scope("summaries"), out.Summaries, wantSummaries)
			if err := ptest.Run(p); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestShardsCoverTheStream checks that the shards of a stream emit every
// transaction exactly once.
func TestShardsCoverTheStream(t *testing.T) {
	for _, tc := range []struct {
		events int64
		shards int
	}{{10, 1}, {10, 3}, {10, 4}, {2, 5}, {0, 3}} {
		g := GenSpec{IntervalMicros: 1000, Accounts: 2, Events: tc.events, Shards: tc.shards}
		seen := map[int64]int{}
		for k := 0; k < tc.shards; k++ {
			sh := Shard{Spec: g, Index: k}
			n := sh.size()
			if tc.events == 0 {
				n = min(n, 100) // unbounded: look at the start
			}
			for j := int64(0); j < n; j++ {
				seen[sh.seq(j)]++
			}
		}
		want := tc.events
		if want == 0 {
			want = 100 * int64(tc.shards)
		}
		for i := int64(0); i < want; i++ {
			if seen[i] != 1 {
				t.Errorf("events=%d shards=%d: transaction %d emitted %d times", tc.events, tc.shards, i, seen[i])
			}
		}
		if int64(len(seen)) != want {
			t.Errorf("events=%d shards=%d: %d transactions emitted, want %d", tc.events, tc.shards, len(seen), want)
		}
	}
}

// firedLines receives, in this process (LOOPBACK), the lines of the
// pipeline in TestFiresBeforeDrain as they are output.
var firedLines = make(chan string, 4096)

func collectLine(line string) {
	select {
	case firedLines <- line:
	default:
	}
}

func init() { register.Function1x0(collectLine) }

// TestFiresBeforeDrain runs the paced, unbounded stream from one shard on
// two subtasks per stage: one source subtask has the shard, the other
// none. Windows and event-time timers must fire while the job runs, not
// only when it is drained (the idle source subtask forwards its busy
// sibling's watermark). The server runs the SDK code in this process, as
// --runner=weir does, so the drain (SDF truncation) goes through the
// in-process worker; `weir serve` drains over the Fn API in Beam's
// TestDrain.
func TestFiresBeforeDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a streaming job for seconds")
	}
	srv, err := weir.Start(weir.Config{Parallelism: 2, InProcess: true, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	endpoint, env, name := *jobopts.Endpoint, *jobopts.EnvironmentType, *jobopts.JobName
	defer func() { *jobopts.Endpoint, *jobopts.EnvironmentType, *jobopts.JobName = endpoint, env, name }()
	*jobopts.Endpoint, *jobopts.EnvironmentType = srv.Endpoint(), "loopback"
	*jobopts.JobName = fmt.Sprintf("streaming-fires-%d", time.Now().UnixNano())

	start := time.Now()
	p, s := beam.NewPipelineWithRoot()
	out := Build(s, Options{
		Spec: GenSpec{
			StartMillis:    start.UnixMilli(),
			IntervalMicros: 20_000, // 50 transactions a second
			Accounts:       3,
			Shards:         1, // unbounded
		},
		Paced:   true,
		Tick:    50 * time.Millisecond,
		Window:  time.Second,
		Opening: 5000,
	})
	beam.ParDo0(s.Scope("CollectWindows"), collectLine, out.Windows)
	beam.ParDo0(s.Scope("CollectSummaries"), collectLine, out.Summaries)
	done := make(chan error, 1)
	go func() { done <- ptest.Run(p) }()

	// The first second's window and its account summaries, once the
	// watermark passes it: a few seconds at most.
	var window, summary bool
	timeout := time.After(30 * time.Second)
	for !window || !summary {
		select {
		case line := <-firedLines:
			t.Logf("%v: %s", time.Since(start).Round(time.Millisecond), line)
			window = window || strings.HasPrefix(line, "window ")
			summary = summary || strings.HasPrefix(line, "acct-")
		case err := <-done:
			t.Fatalf("job ended before it was drained: %v", err)
		case <-timeout:
			t.Fatalf("nothing fired in 30s of streaming (window line: %v, summary line: %v): the watermark is held back", window, summary)
		}
	}
	t.Logf("a window and a summary fired %v after the start, before the drain", time.Since(start).Round(time.Millisecond))
	if err := drain(*jobopts.Endpoint, *jobopts.JobName); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("drained job: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("drained job did not end")
	}
}
