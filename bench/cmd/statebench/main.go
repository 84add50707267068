// Command statebench measures keyed state and event-time timers: a
// deterministic generator (a bounded splittable DoFn) emits --events events
// over --keys keys with event times spread over one fixed window; a stateful
// DoFn counts each key's events in ValueState and sets an event-time timer at
// the window's end, which emits the count when the watermark passes it. The
// job fails unless the emitted counts sum to --events and every key fires
// once (passert), and the child also checks Beam counters.
//
// The same pipeline runs on each of --runners, embedded (weir in-process with
// a LOOPBACK harness; prism likewise), one after another. Each run is a fresh
// process — this binary re-executed with --child=RUNNER — so its peak RSS
// (getrusage of the exited child) is its own. Wall time is the child's, from
// start to exit.
//
//	go run ./bench/cmd/statebench                                  # 200000 events, 100000 keys, weir and prism
//	go run ./bench/cmd/statebench --events=20000 --keys=10000
//	go run ./bench/cmd/statebench --runners=weir --events=10000000 --keys=1000000
//	go run ./bench/cmd/statebench -- --parallelism=4               # flags after -- go to every child
//	go run ./bench/cmd/statebench --pipeline=global                # issue 13's pipeline: int64 keys in the global
//	                                                               # window, the timer set again on every event
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"

	"github.com/weir-runner/weir/bench/internal/childproc"
	"github.com/weir-runner/weir/bench/internal/paired"
	"github.com/weir-runner/weir/bench/internal/statepipe"
	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/checkpoint/storage"

	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism" // --child=prism
	_ "github.com/weir-runner/weir/runner"                       // --child=weir
)

var (
	events          = flag.Int64("events", 200000, "events to generate")
	keys            = flag.Int64("keys", 100000, "distinct keys (event i has key i mod keys)")
	runnersFlag     = flag.String("runners", "weir,prism", "comma-separated runners, each run in its own process: weir, prism")
	span            = flag.Duration("span", time.Minute, "event times are spread over one fixed window this long")
	splits          = flag.Int64("splits", 16, "initial restrictions of the generator")
	timeout         = flag.Duration("timeout", 30*time.Minute, "timeout of one run")
	logDir          = flag.String("logs", "", "keep each child's log here (default: a temporary directory, printed on failure)")
	cpuProfile      = flag.String("cpuprofile", "", "write each child's CPU profile to this path with the runner's name appended (PATH.weir, PATH.prism)")
	memProfile      = flag.String("memprofile", "", "write each child's heap profile to this path with the runner's name appended, every 10 s and at the end")
	rounds          = flag.Int("rounds", 1, "run the list of --runners this many times, one after another, and judge the ratios by their median (runs on a shared machine are noisy)")
	maxRSS          = flag.Int64("max_rss_mb", 0, "if set, judge every weir run's peak RSS against this many MB (the issue's 10M/1M target: 1024)")
	checkpointEvery = flag.Duration("checkpoint_every", time.Second, "checkpoint interval of the weir-chk runner (weir checkpointing to a local file:// dir)")
	pipelineFlag    = flag.String("pipeline", "window", "window: events in one fixed window, the timer set on a key's first event; global: int64 keys in the global window, the timer set again on every event at the window's end (issue 13's pipeline)")
	child           = flag.String("child", "", "internal: run the pipeline once on this runner, in this process, and report")
)

// report is what a child prints on its last stdout line, after reportTag.
type report struct {
	Runner        string
	PipelineSecs  float64
	EventsCounted int64
	KeysFired     int64
	Checkpoints   int64 // weir-chk: the ID of the last checkpoint taken
}

const reportTag = "STATEBENCH-REPORT "

func main() {
	flag.Parse()
	beam.Init() // a worker started by a runner stops here
	if *pipelineFlag != "window" && *pipelineFlag != "global" {
		fmt.Fprintf(os.Stderr, "statebench: --pipeline=%q: want window or global\n", *pipelineFlag)
		os.Exit(2)
	}
	if *events <= 0 || *keys <= 0 {
		fmt.Fprintln(os.Stderr, "statebench: --events and --keys must be positive")
		os.Exit(2)
	}
	if *child != "" {
		if err := runChild(*child); err != nil {
			fmt.Fprintf(os.Stderr, "statebench (%s): %v\n", *child, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runParent(ctx))
}

func spec() statepipe.Spec {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return statepipe.Spec{
		Events:      *events,
		Keys:        *keys,
		StartMillis: start.Truncate(*span).UnixMilli(),
		SpanMillis:  span.Milliseconds(),
		Splits:      *splits,
	}
}

// runChild runs the pipeline once on runner, embedded in this process.
func runChild(runner string) error {
	stopProfile, err := childproc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if *memProfile != "" {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					writeHeapProfile(*memProfile)
					return
				case <-t.C:
					writeHeapProfile(*memProfile)
				}
			}
		}()
		defer func() { close(stop); <-done }()
	}
	p, s := beam.NewPipelineWithRoot()
	if *pipelineFlag == "global" {
		statepipe.BuildGlobal(s, spec())
	} else {
		statepipe.Build(s, spec())
	}
	start := time.Now()
	res, err := beam.Run(context.Background(), runner, p)
	if err != nil {
		return err
	}
	r := report{Runner: runner, PipelineSecs: time.Since(start).Seconds()}
	if res != nil {
		for _, c := range res.Metrics().Query(func(sr metrics.SingleResult) bool {
			return sr.Namespace() == "statebench"
		}).Counters() {
			switch c.Name() {
			case "events_counted":
				r.EventsCounted = c.Result()
			case "keys_fired":
				r.KeysFired = c.Result()
			}
		}
	}
	if dir := flag.Lookup("checkpoint_dir").Value.String(); dir != "" {
		r.Checkpoints = lastCheckpoint(dir, "statebench")
	}
	js, _ := json.Marshal(r)
	fmt.Printf("%s%s\n", reportTag, js)
	if want := min(*keys, *events); r.EventsCounted != *events || r.KeysFired != want {
		return fmt.Errorf("counters: %d events counted, %d keys fired; want %d and %d", r.EventsCounted, r.KeysFired, *events, want)
	}
	return nil
}

// writeHeapProfile replaces the heap profile at path (through a temporary
// file, so a child killed while writing leaves the previous one whole).
func writeHeapProfile(path string) {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return
	}
	err = pprof.Lookup("heap").WriteTo(f, 0)
	if cerr := f.Close(); err == nil && cerr == nil {
		os.Rename(path+".tmp", path)
	}
}

// result is one child run as the parent saw it.
type result struct {
	runner string
	round  int
	wall   time.Duration
	rss    int64         // bytes
	cpu    time.Duration // user + system CPU of the child
	rep    report
	err    error
}

func runParent(ctx context.Context) int {
	var runners []string
	for _, r := range strings.Split(*runnersFlag, ",") {
		switch r = strings.TrimSpace(r); r {
		case "":
		case "weir", "prism", "weir-chk":
			runners = append(runners, r)
		default:
			fmt.Fprintf(os.Stderr, "statebench: unknown runner %q (weir, weir-chk, prism)\n", r)
			return 2
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "statebench:", err)
		return 2
	}
	logs := *logDir
	keepLogs := logs != ""
	if logs == "" {
		if logs, err = os.MkdirTemp("", "statebench-logs-"); err != nil {
			fmt.Fprintln(os.Stderr, "statebench:", err)
			return 2
		}
	} else if err := os.MkdirAll(logs, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "statebench:", err)
		return 2
	}

	var results []*result
	failed := false
	for round := 1; round <= max(*rounds, 1); round++ {
		for _, r := range runners {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(os.Stderr, "== %s: %d events, %d keys (round %d)\n", r, *events, *keys, round)
			logPath := filepath.Join(logs, fmt.Sprintf("%s-%d.log", r, round))
			res := runOne(ctx, self, r, logPath)
			res.round = round
			results = append(results, res)
			if res.err != nil {
				failed = true
				fmt.Fprintf(os.Stderr, "   FAILED: %v\n%s\n", res.err, childproc.Tail(logPath, 20))
			} else {
				fmt.Fprintf(os.Stderr, "   %.1f s (pipeline %.1f s), peak RSS %.0f MB\n", res.wall.Seconds(), res.rep.PipelineSecs, mb(res.rss))
			}
		}
	}

	w := os.Stdout
	if *pipelineFlag == "global" {
		fmt.Fprintf(w, "\nstatebench: %d events over %d int64 keys in the global window; per-key count in ValueState, event-time timer set again on every event at the window end\n\n", *events, *keys)
	} else {
		fmt.Fprintf(w, "\nstatebench: %d events over %d keys in one %s window; per-key count in ValueState, event-time timer per key at the window end\n\n", *events, *keys, *span)
	}
	fmt.Fprintf(w, "%-8s | %5s | %10s | %9s | %7s | %9s | %11s | %5s | %9s\n", "runner", "round", "events", "keys", "wall s", "events/s", "peak RSS MB", "cores", "CPU µs/ev")
	fmt.Fprintf(w, "%s-+-%s-+-%s-+-%s-+-%s-+-%s-+-%s-+-%s-+-%s\n", dashes(8), dashes(5), dashes(10), dashes(9), dashes(7), dashes(9), dashes(11), dashes(5), dashes(9))
	byRound := map[int]map[string]*result{}
	for _, r := range results {
		if byRound[r.round] == nil {
			byRound[r.round] = map[string]*result{}
		}
		byRound[r.round][r.runner] = r
		if r.err != nil {
			// Wall time and RSS up to the failure (or the timeout kill).
			fmt.Fprintf(w, "%-8s | %5d | %10d | %9d | %7s | %9s | %11.0f   FAILED after %.0f s: %s\n", r.runner, r.round, *events, *keys, "-", "-", mb(r.rss), r.wall.Seconds(), r.err)
			continue
		}
		// cores: CPU time over wall time, both sides of the Fn API (the
		// LOOPBACK harness runs in the child); CPU µs/ev: per event.
		fmt.Fprintf(w, "%-8s | %5d | %10d | %9d | %7.1f | %9.0f | %11.0f | %5.2f | %9.0f\n", r.runner, r.round, *events, *keys, r.wall.Seconds(), rate(r), mb(r.rss),
			r.cpu.Seconds()/r.wall.Seconds(), float64(r.cpu.Microseconds())/float64(*events))
	}
	// ratios are a/b's throughput in every round where both ran.
	ratios := func(a, b string, of func(x, y *result) float64) []float64 {
		var out []float64
		for round := 1; round <= max(*rounds, 1); round++ {
			x, y := byRound[round][a], byRound[round][b]
			if x != nil && y != nil && x.err == nil && y.err == nil {
				out = append(out, of(x, y))
			}
		}
		return out
	}
	throughput := func(x, y *result) float64 { return rate(x) / rate(y) }
	if tr := ratios("weir", "prism", throughput); len(tr) > 0 {
		rss := ratios("weir", "prism", func(x, y *result) float64 { return float64(x.rss) / float64(y.rss) })
		target := "(target >= 10x: PASS)"
		switch {
		case *pipelineFlag == "global":
			target = "(global-window pipeline: no target; make bench runs it beside the window pipeline)"
		case paired.Median(tr) < 10:
			target, failed = "(target >= 10x: FAIL)", true
		}
		fmt.Fprintf(w, "\nweir/prism throughput (%s pipeline): %s %s   weir/prism peak RSS: %s\n", *pipelineFlag, paired.Format(tr), target, paired.Format(rss))
	}
	if *maxRSS > 0 {
		for round := 1; round <= max(*rounds, 1); round++ {
			r := byRound[round]["weir"]
			if r == nil || r.err != nil {
				continue
			}
			verdict := "PASS"
			if mb(r.rss) >= float64(*maxRSS) {
				verdict, failed = "FAIL", true
			}
			fmt.Fprintf(w, "\nweir peak RSS at %d events over %d keys (round %d): %.0f MB (target < %d MB: %s)\n", *events, *keys, round, mb(r.rss), *maxRSS, verdict)
		}
	}
	if cr := ratios("weir-chk", "weir", throughput); len(cr) > 0 {
		verdict := "PASS"
		if paired.Median(cr) < 0.9 {
			verdict, failed = "FAIL", true
		}
		var taken []string
		for round := 1; round <= max(*rounds, 1); round++ {
			if c := byRound[round]["weir-chk"]; c != nil && c.err == nil {
				taken = append(taken, fmt.Sprint(c.rep.Checkpoints))
			}
		}
		fmt.Fprintf(w, "\nweir with a checkpoint every %s / without: throughput %s (target >= 0.9x: %s), checkpoints taken: %s\n", *checkpointEvery, paired.Format(cr), verdict, strings.Join(taken, ", "))
	}
	if ctx.Err() != nil {
		fmt.Fprintln(w, "interrupted")
		failed = true
	}
	if failed || keepLogs {
		fmt.Fprintf(w, "\nchild logs in %s\n", logs)
	} else {
		os.RemoveAll(logs)
	}
	if failed {
		return 1
	}
	return 0
}

// runOne re-executes this binary with --child=runner and measures it.
func runOne(ctx context.Context, self, runner, logPath string) *result {
	res := &result{runner: runner}
	// The child's temporary files (runnerlib's placeholders, weir's
	// Pebble state) go in a directory removed afterwards.
	tmp, err := os.MkdirTemp("", "statebench-"+runner+"-")
	if err != nil {
		res.err = err
		return res
	}
	defer os.RemoveAll(tmp)

	childRunner := runner
	var extra []string
	if runner == "weir-chk" {
		// weir with a checkpoint every --checkpoint_every to a file:// dir.
		childRunner = "weir"
		extra = []string{"--checkpoint_dir=file://" + filepath.Join(tmp, "checkpoints"), "--checkpointing_interval=" + checkpointEvery.String(), "--job_name=statebench"}
	}
	args := []string{
		"--child=" + childRunner,
		fmt.Sprintf("--events=%d", *events),
		fmt.Sprintf("--keys=%d", *keys),
		fmt.Sprintf("--span=%s", *span),
		fmt.Sprintf("--splits=%d", *splits),
		"--pipeline=" + *pipelineFlag,
	}
	if *cpuProfile != "" {
		args = append(args, "--cpuprofile="+*cpuProfile+"."+runner)
	}
	if *memProfile != "" {
		args = append(args, "--memprofile="+*memProfile+"."+runner)
	}
	args = append(args, extra...)
	args = append(args, flag.Args()...)
	out, err := childproc.Run{Self: self, Args: args, LogPath: logPath, TempDir: tmp, Timeout: *timeout}.Start(ctx)
	res.err = err
	if out == nil {
		return res
	}
	res.wall, res.rss, res.cpu = out.Wall, out.RSS, out.CPU
	if _, err := childproc.Report(out.Stdout, reportTag, &res.rep); err != nil && res.err == nil {
		res.err = err
	}
	if res.err == nil && res.rep.Runner == "" {
		res.err = errors.New("the child printed no report")
	}
	return res
}

func rate(r *result) float64 { return float64(*events) / r.wall.Seconds() }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func dashes(n int) string { return strings.Repeat("-", n) }

// lastCheckpoint is the ID of job's last completed checkpoint in dir (0 if
// none).
func lastCheckpoint(dir, job string) int64 {
	st, err := storage.Open(context.Background(), dir)
	if err != nil {
		return 0
	}
	defer st.Close()
	metas, _, err := checkpoint.List(context.Background(), st, job)
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].CheckpointID
}
