// Command loadbench runs Beam's Go load tests (go/test/load) on weir, prism and
// the direct runner and compares wall time and peak memory.
//
// Each load test main is built once into a cache directory. Every run is a
// fresh process: for weir a fresh `weir serve` too, with the pipeline
// submitted through --runner=universal --environment_type=LOOPBACK, so the SDK
// harness lives in the client and weir's peak RSS is the server's peak plus
// the client's. prism and direct run embedded in the client. Peak RSS comes
// from getrusage of each exited child.
//
//	go run ./bench/cmd/loadbench --weir=bin/weir --records=1000000
//	go run ./bench/cmd/loadbench --runners=prism,direct --records=10000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/weir-runner/weir/conformance/driver"
)

const loadPkg = "github.com/apache/beam/sdks/v2/go/test/load/"

// loadTest is one of Beam's load test mains and the flags it runs with
// besides --input_options and the runner flags.
type loadTest struct {
	name string
	args func(n int64) []string
}

var loadTests = []loadTest{
	{"group_by_key", func(int64) []string { return []string{"--fanout=1", "--iterations=1"} }},
	{"combine", func(int64) []string { return []string{"--fanout=1", "--top_count=20"} }},
	// cogbk needs a second source; as in Beam's own CoGBK load tests it is a
	// tenth the size of the first.
	{"cogbk", func(n int64) []string {
		return []string{"--iterations=1", "--co_input_options=" + inputOptions(max(n/10, 1))}
	}},
	// Ten chained ParDos, as Beam's first ParDo load test.
	{"pardo", func(int64) []string {
		return []string{"--iterations=10", "--number_of_counters=0", "--number_of_counter_operations=0"}
	}},
	{"sideinput", func(int64) []string { return []string{"--access_percentage=100"} }},
}

var (
	records     = flag.Int64("records", 1000000, "records per synthetic source (num_records)")
	testsFlag   = flag.String("tests", "group_by_key,combine,cogbk,pardo,sideinput", "comma-separated load tests")
	runnersFlag = flag.String("runners", "weir,prism,direct", "comma-separated runners: weir, prism, direct")
	weirBin     = flag.String("weir", "bin/weir", "weir binary, started as `weir serve` for each run (relative to the module root)")
	parallelism = flag.Int("parallelism", 0, "pass --parallelism=N to weir serve (0: weir's default)")
	scale       = flag.Int64("scale", 5, "also run group_by_key on weir at scale×records and print the RSS ratio (0: off)")
	timeout     = flag.Duration("timeout", 30*time.Minute, "timeout of one run")
	cacheDir    = flag.String("cache", ".cache/bench", "where load test binaries are cached (relative to the module root)")
	outDir      = flag.String("out", "out/bench", "where run logs and results.json go (relative to the module root)")
)

func inputOptions(n int64) string {
	return fmt.Sprintf(`{"num_records":%d,"key_size":10,"value_size":90}`, n)
}

// result is one run of one load test on one runner.
type result struct {
	Test      string
	Runner    string
	Records   int64
	Seconds   float64
	ClientRSS int64  // bytes
	ServerRSS int64  // bytes; weir only
	Error     string `json:",omitempty"`
}

func (r *result) rss() int64 { return r.ClientRSS + r.ServerRSS }
func (r *result) ok() bool   { return r != nil && r.Error == "" }

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		code = 2
	}
	os.Exit(code)
}

func run(ctx context.Context) (int, error) {
	root, err := driver.ModuleRoot()
	if err != nil {
		return 2, err
	}
	abs := func(p string) string { return driver.InRoot(root, p) }
	out := abs(*outDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return 2, err
	}

	var tests []loadTest
	for _, n := range splitList(*testsFlag) {
		found := false
		for _, t := range loadTests {
			if t.name == n {
				tests, found = append(tests, t), true
			}
		}
		if !found {
			return 2, fmt.Errorf("unknown load test %q", n)
		}
	}
	runners := splitList(*runnersFlag)
	for _, r := range runners {
		if r != "weir" && r != "prism" && r != "direct" {
			return 2, fmt.Errorf("unknown runner %q (weir, prism, direct)", r)
		}
	}
	if *records <= 0 {
		return 2, fmt.Errorf("--records must be positive")
	}

	cache := &driver.Cache{Root: root, Dir: abs(*cacheDir), Log: os.Stderr}
	want := map[string]string{}
	for _, t := range tests {
		want[t.name] = loadPkg + t.name
	}
	if *scale > 0 && contains(runners, "weir") {
		want["group_by_key"] = loadPkg + "group_by_key"
	}
	bins, err := cache.Ensure(ctx, driver.Command, want)
	if err != nil {
		return 2, err
	}

	b := &bench{bins: bins, out: out, weir: abs(*weirBin)}
	var results []*result
	get := func(test, runner string, n int64) *result {
		for _, r := range results {
			if r.Test == test && r.Runner == runner && r.Records == n {
				return r
			}
		}
		return nil
	}
	for _, t := range tests {
		for _, rn := range runners {
			if ctx.Err() != nil {
				break
			}
			results = append(results, b.run(ctx, t, rn, *records))
		}
	}
	var scaled, base *result
	if *scale > 0 && contains(runners, "weir") && ctx.Err() == nil {
		gbk := loadTests[0]
		base = get(gbk.name, "weir", *records)
		if base == nil {
			base = b.run(ctx, gbk, "weir", *records)
			results = append(results, base)
		}
		scaled = b.run(ctx, gbk, "weir", *scale**records)
		results = append(results, scaled)
	}

	// Report.
	w := os.Stdout
	fmt.Fprintf(w, "\nBeam Go load tests, %d records of 100 bytes (key 10, value 90)\n\n", *records)
	row := func(a, b, c, d, e, f string) {
		fmt.Fprintf(w, "%-13s | %-7s | %9s | %8s | %11s | %s\n", a, b, c, d, e, f)
	}
	row("test", "runner", "records", "wall s", "peak RSS MB", "")
	fmt.Fprintln(w, strings.Repeat("-", 13)+"-+-"+strings.Repeat("-", 7)+"-+-"+strings.Repeat("-", 9)+"-+-"+strings.Repeat("-", 8)+"-+-"+strings.Repeat("-", 11)+"-+-")
	failed := false
	for _, r := range results {
		note := ""
		if r.Runner == "weir" && r.ok() {
			note = fmt.Sprintf("server %.0f + client %.0f", mb(r.ServerRSS), mb(r.ClientRSS))
		}
		if !r.ok() {
			failed = true
			row(r.Test, r.Runner, fmt.Sprint(r.Records), "FAILED", "FAILED", firstLine(r.Error))
			continue
		}
		row(r.Test, r.Runner, fmt.Sprint(r.Records), fmt.Sprintf("%.1f", r.Seconds), fmt.Sprintf("%.0f", mb(r.rss())), note)
	}

	if contains(runners, "weir") && (contains(runners, "prism") || contains(runners, "direct")) {
		fmt.Fprintf(w, "\nweir relative to the others (< 1 is better for weir)\n\n")
		fmt.Fprintf(w, "%-13s | %16s | %16s | %17s | %17s\n", "test", "weir/prism time", "weir/prism mem", "weir/direct time", "weir/direct mem")
		fmt.Fprintln(w, strings.Repeat("-", 13)+"-+-"+strings.Repeat("-", 16)+"-+-"+strings.Repeat("-", 16)+"-+-"+strings.Repeat("-", 17)+"-+-"+strings.Repeat("-", 17))
		for _, t := range tests {
			wr := get(t.name, "weir", *records)
			pr := get(t.name, "prism", *records)
			dr := get(t.name, "direct", *records)
			fmt.Fprintf(w, "%-13s | %16s | %16s | %17s | %17s\n", t.name,
				ratio(wr, pr, func(r *result) float64 { return r.Seconds }),
				ratio(wr, pr, func(r *result) float64 { return float64(r.rss()) }),
				ratio(wr, dr, func(r *result) float64 { return r.Seconds }),
				ratio(wr, dr, func(r *result) float64 { return float64(r.rss()) }))
		}
	}
	if scaled != nil {
		fmt.Fprintf(w, "\nweir memory as data grows (group_by_key): ")
		if base.ok() && scaled.ok() {
			fmt.Fprintf(w, "%d records %.0f MB, %d records %.0f MB: RSS ratio %dx/1x = %.2f\n",
				base.Records, mb(base.rss()), scaled.Records, mb(scaled.rss()), *scale, float64(scaled.rss())/float64(base.rss()))
		} else {
			fmt.Fprintf(w, "FAILED (a run failed)\n")
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintln(w, "interrupted")
		failed = true
	}

	js, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "results.json"), append(js, '\n'), 0o644); err != nil {
		return 2, err
	}
	fmt.Fprintf(w, "\nlogs and results.json in %s\n", out)
	if failed {
		return 1, nil
	}
	return 0, nil
}

type bench struct {
	bins map[string]string
	out  string
	weir string
}

// run runs one load test on one runner and measures it. Failures are recorded
// in the result and printed, never fatal.
func (b *bench) run(ctx context.Context, t loadTest, runner string, n int64) *result {
	r := &result{Test: t.name, Runner: runner, Records: n}
	base := filepath.Join(b.out, fmt.Sprintf("%s-%s-%d", t.name, runner, n))
	fmt.Fprintf(os.Stderr, "== %s on %s, %d records\n", t.name, runner, n)
	fail := func(err error, logPath string) *result {
		r.Error = err.Error()
		if logPath != "" {
			r.Error += "\n" + driver.Tail(logPath, 20)
		}
		fmt.Fprintf(os.Stderr, "   FAILED: %s\n", indent(r.Error))
		return r
	}

	tmp, err := os.MkdirTemp("", "loadbench-")
	if err != nil {
		return fail(err, "")
	}
	defer os.RemoveAll(tmp)

	args := append([]string{"--input_options=" + inputOptions(n)}, t.args(n)...)
	var srv *driver.Server
	switch runner {
	case "weir":
		serveLog := base + ".serve.log"
		os.Remove(serveLog)
		var extra []string
		if *parallelism > 0 {
			extra = append(extra, fmt.Sprintf("--parallelism=%d", *parallelism))
		}
		srv, err = driver.StartWeir(ctx, b.weir, extra, serveLog)
		if err != nil {
			return fail(err, "")
		}
		defer func() {
			if srv != nil {
				srv.Stop()
			}
		}()
		args = append(args, "--runner=universal", "--endpoint="+srv.Endpoint, "--environment_type=LOOPBACK")
	case "prism":
		args = append(args, "--runner=prism")
	case "direct":
		args = append(args, "--runner=direct")
	}

	logPath := base + ".log"
	logf, err := os.Create(logPath)
	if err != nil {
		return fail(err, "")
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", b.bins[t.name], strings.Join(args, " "))
	cmd := exec.Command(b.bins[t.name], args...)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	cmd.Stdout = logf
	cmd.Stderr = logf
	p, timedOut, runErr := driver.RunTimeout(ctx, cmd, *timeout)
	if p != nil {
		r.Seconds = p.Wall.Seconds()
		r.ClientRSS = p.MaxRSS()
	}
	if srv != nil {
		alive := srv.Alive()
		stopErr := srv.Stop()
		r.ServerRSS = srv.Proc().MaxRSS()
		srv = nil
		if runErr == nil && (!alive || stopErr != nil) {
			runErr = fmt.Errorf("weir serve did not survive the run: %v", stopErr)
			logPath = base + ".serve.log"
		}
	}
	switch {
	case timedOut:
		return fail(fmt.Errorf("timed out after %s", *timeout), logPath)
	case ctx.Err() != nil:
		return fail(ctx.Err(), "")
	case runErr != nil:
		return fail(runErr, logPath)
	}
	if r.Runner == "weir" {
		fmt.Fprintf(os.Stderr, "   %.1f s, peak RSS %.0f MB (server %.0f + client %.0f)\n", r.Seconds, mb(r.rss()), mb(r.ServerRSS), mb(r.ClientRSS))
	} else {
		fmt.Fprintf(os.Stderr, "   %.1f s, peak RSS %.0f MB\n", r.Seconds, mb(r.rss()))
	}
	return r
}

func ratio(a, b *result, f func(*result) float64) string {
	if !a.ok() || !b.ok() || f(b) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", f(a)/f(b))
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n   ") }
