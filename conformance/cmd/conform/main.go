// Command conform runs Beam's Go test suites (conformance.Suites) against a
// weir job server and reports per-test results.
//
// It builds each suite's test binary once with `go test -c` into a cache
// directory, starts `weir serve` (or uses --endpoint), runs the suites one at a
// time with --runner=universal --environment_type=LOOPBACK, converts their
// output with `go tool test2json`, and prints a table and the line
//
//	conformance: N passed, M failed, K skipped
//
// It exits 1 if any test failed, a suite binary crashed or timed out, or the
// server died.
//
//	go run ./conformance/cmd/conform --weir=bin/weir
//	go run ./conformance/cmd/conform --endpoint=127.0.0.1:8073 --suites=passert,primitives
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/weir-runner/weir/conformance"
	"github.com/weir-runner/weir/conformance/driver"
)

var (
	weirBin     = flag.String("weir", "bin/weir", "weir binary to start as `weir serve` (relative to the module root)")
	endpoint    = flag.String("endpoint", "", "use this already running job server (host:port) instead of starting weir, e.g. prism")
	parallelism = flag.Int("parallelism", 0, "pass --parallelism=N to weir serve (0: weir's default)")
	suitesFlag  = flag.String("suites", "", "comma-separated suites to run (default: all enabled); naming a disabled suite runs it")
	runFlag     = flag.String("run", "", "only run tests matching this -test.run regexp")
	skipFile    = flag.String("skiplist", "", "skip list file (default: conformance/skiplist.txt as compiled in)")
	cacheDir    = flag.String("cache", ".cache/conformance", "where test binaries are cached (relative to the module root)")
	outDir      = flag.String("out", "out/conformance", "where logs and test2json output go (relative to the module root)")
	tailLines   = flag.Int("tail", 40, "lines of output shown per failed test")
	verbose     = flag.Bool("v", false, "stream every test's output")
	timeoutMul  = flag.Float64("timeout_scale", 1, "multiply each suite's timeout")
)

// suiteRun is the outcome of one suite.
type suiteRun struct {
	suite                   conformance.Suite
	passed, failed, skipped []*driver.TestResult
	listed                  int           // skip-listed tests found in the binary (counted in skipped)
	stale                   []string      // skip-list entries the binary does not have
	problem                 string        // crash, timeout, server death: the suite itself failed
	pkgOutput               string        // output outside any test
	wall                    time.Duration // run time
}

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, err := run(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conform:", err)
		if code == 0 {
			code = 2
		}
	}
	os.Exit(code)
}

func run(ctx context.Context) (int, error) {
	root, err := driver.ModuleRoot()
	if err != nil {
		return 2, err
	}
	abs := func(p string) string { return driver.InRoot(root, p) }

	skipText := conformance.SkipListText()
	if *skipFile != "" {
		b, err := os.ReadFile(*skipFile)
		if err != nil {
			return 2, err
		}
		skipText = string(b)
	}
	skips, err := conformance.ParseSkipList(skipText)
	if err != nil {
		return 2, err
	}

	suites, err := selectSuites(*suitesFlag)
	if err != nil {
		return 2, err
	}
	if err := os.MkdirAll(abs(*outDir), 0o755); err != nil {
		return 2, err
	}

	// (a) Build the test binaries, once.
	cache := &driver.Cache{Root: root, Dir: abs(*cacheDir), Log: os.Stderr}
	want := map[string]string{}
	var pkgs []string
	for _, s := range suites {
		want[s.Name] = s.Pkg
		pkgs = append(pkgs, s.Pkg)
	}
	bins, err := cache.Ensure(ctx, driver.TestBinary, want)
	if err != nil {
		return 2, err
	}
	dirs, err := driver.PackageDirs(ctx, root, pkgs)
	if err != nil {
		return 2, err
	}

	// (b) The job server.
	var srv *driver.Server
	serverLog := filepath.Join(abs(*outDir), "weir-serve.log")
	var serverProblems []string
	startServer := func() error {
		var extra []string
		if *parallelism > 0 {
			extra = append(extra, fmt.Sprintf("--parallelism=%d", *parallelism))
		}
		s, err := driver.StartWeir(ctx, abs(*weirBin), extra, serverLog)
		if err != nil {
			return err
		}
		srv = s
		fmt.Fprintf(os.Stderr, "weir serve listening on %s (log %s)\n", s.Endpoint, serverLog)
		return nil
	}
	if *endpoint == "" {
		os.Remove(serverLog)
		if err := startServer(); err != nil {
			return 2, err
		}
		defer func() {
			if srv != nil {
				srv.Stop()
			}
		}()
	}
	// Since Go 1.24 test2json is built on demand; -n prints its path.
	t2j := exec.CommandContext(ctx, "go", "tool", "-n", "test2json")
	t2j.Dir = root
	t2jOut, err := t2j.Output()
	if err != nil {
		return 2, fmt.Errorf("go tool -n test2json: %w", err)
	}
	test2json := strings.TrimSpace(string(t2jOut))

	// (c) Run the suites, one at a time.
	var runs []*suiteRun
	for _, s := range suites {
		if ctx.Err() != nil {
			break
		}
		ep := *endpoint
		var serverDone <-chan struct{}
		if ep == "" {
			if srv == nil {
				// It died during the previous suite: start a fresh one.
				if err := startServer(); err != nil {
					serverProblems = append(serverProblems, "restarting weir serve: "+err.Error())
					break
				}
			}
			ep = srv.Endpoint
			serverDone = srv.Proc().Done()
		}
		r := runSuite(ctx, s, test2json, bins[s.Name], dirs[s.Pkg], ep, serverDone, conformance.ForSuite(skips, s.Name), abs(*outDir))
		if srv != nil && !srv.Alive() {
			err := srv.Stop()
			srv = nil
			r.problem = "weir serve died during the suite"
			msg := fmt.Sprintf("weir serve died during suite %s: %v; its log %s ends:\n%s", s.Name, err, serverLog, driver.Tail(serverLog, *tailLines))
			serverProblems = append(serverProblems, msg)
		}
		runs = append(runs, r)
		fmt.Fprintf(os.Stderr, "%s: %d passed, %d failed, %d skipped (%s)%s\n", s.Name,
			len(r.passed), len(r.failed), len(r.skipped)+r.listed, r.wall.Round(time.Second), note(r))
	}
	if srv != nil {
		if err := srv.Stop(); err != nil {
			serverProblems = append(serverProblems, fmt.Sprintf("%v\n%s", err, driver.Tail(serverLog, *tailLines)))
		}
		srv = nil
	}

	// (d) Report.
	return report(os.Stdout, runs, serverProblems, ctx.Err()), nil
}

func selectSuites(list string) ([]conformance.Suite, error) {
	if list == "" {
		var out []conformance.Suite
		for _, s := range conformance.Suites {
			if s.Disabled == "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
	var out []conformance.Suite
	for _, n := range strings.Split(list, ",") {
		s, ok := conformance.SuiteByName(strings.TrimSpace(n))
		if !ok {
			var all []string
			for _, s := range conformance.Suites {
				all = append(all, s.Name)
			}
			return nil, fmt.Errorf("unknown suite %q (have %s)", n, strings.Join(all, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

// listTests returns the top-level tests of a test binary.
func listTests(ctx context.Context, bin, dir, tmp string) ([]string, error) {
	cmd := exec.CommandContext(ctx, bin, "-test.list", ".*")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -test.list: %w", filepath.Base(bin), err)
	}
	var tests []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Test") {
			tests = append(tests, strings.TrimSpace(l))
		}
	}
	return tests, nil
}

func runSuite(ctx context.Context, s conformance.Suite, test2json, bin, dir, ep string, serverDone <-chan struct{}, skips map[string]conformance.SkipEntry, outDir string) *suiteRun {
	r := &suiteRun{suite: s}
	began := time.Now()
	defer func() { r.wall = time.Since(began) }()
	dctx, stopDrainer := context.WithCancel(ctx)
	defer stopDrainer()
	go drainer(dctx, ep) // ends with this suite

	// Beam's loopback client leaves a temp file per pipeline: give each suite
	// its own TMPDIR and remove it afterwards.
	tmp, err := os.MkdirTemp("", "conform-"+s.Name+"-")
	if err != nil {
		r.problem = err.Error()
		return r
	}
	defer os.RemoveAll(tmp)

	tests, err := listTests(ctx, bin, dir, tmp)
	if err != nil {
		r.problem = err.Error()
		return r
	}
	have := map[string]bool{}
	for _, t := range tests {
		have[t] = true
	}
	var skipNames []string
	for name := range skips {
		if have[name] {
			skipNames = append(skipNames, name)
			r.listed++
		} else {
			r.stale = append(r.stale, name)
		}
	}
	sort.Strings(r.stale)

	timeout := time.Duration(float64(s.Timeout) * *timeoutMul)
	args := []string{"-t", "-p", s.Name, bin,
		"-test.v=test2json", "-test.count=1", fmt.Sprintf("-test.timeout=%s", timeout),
		"--runner=universal", "--endpoint=" + ep, "--environment_type=LOOPBACK"}
	if p := conformance.SkipPattern(skipNames); p != "" {
		args = append(args, "-test.skip="+p)
	}
	if *runFlag != "" {
		args = append(args, "-test.run="+*runFlag)
	}
	cmd := exec.Command(test2json, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	// Not StdoutPipe: Wait closes that pipe as soon as the process exits,
	// racing the reader for the last lines (the package's final result).
	// With a writer, Wait returns only once everything is copied.
	stdout, stdoutW := io.Pipe()
	cmd.Stdout = stdoutW
	cmd.WaitDelay = 10 * time.Second // a leftover grandchild cannot hold the copy open
	jsonOut, err := os.Create(filepath.Join(outDir, s.Name+".json"))
	if err != nil {
		r.problem = err.Error()
		return r
	}
	defer jsonOut.Close()
	logOut, err := os.Create(filepath.Join(outDir, s.Name+".log"))
	if err != nil {
		r.problem = err.Error()
		return r
	}
	defer logOut.Close()
	fmt.Fprintf(logOut, "# %s %s\n", cmd.Path, strings.Join(args, " "))
	cmd.Stderr = logOut

	fmt.Fprintf(os.Stderr, "== %s: %d tests, %d skip-listed, timeout %s\n", s.Name, len(tests), r.listed, timeout)
	res := driver.NewSuiteResult()
	readDone := make(chan error, 1)
	go func() {
		readDone <- res.Read(io.TeeReader(stdout, jsonOut), func(e driver.Event) {
			if e.Action == "output" {
				logOut.WriteString(e.Output)
				if *verbose {
					os.Stderr.WriteString(e.Output)
				}
			}
			if e.Test != "" && e.Action == "fail" {
				fmt.Fprintf(os.Stderr, "   FAIL %s\n", e.Test)
			}
		})
	}()
	// Stop the suite at once if the server dies: every further test would
	// wait minutes to connect.
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if serverDone != nil {
		go func() {
			select {
			case <-serverDone:
				fmt.Fprintf(os.Stderr, "   weir serve died: stopping %s\n", s.Name)
				cancel()
			case <-runCtx.Done():
			}
		}()
	}
	// The test binary times itself out first (with a goroutine dump); this is
	// the backstop.
	_, timedOut, runErr := driver.RunTimeout(runCtx, cmd, timeout+2*time.Minute)
	stdoutW.Close()
	<-readDone

	r.passed, r.failed, r.skipped = res.Counted()
	r.pkgOutput = res.PkgOutput()
	switch {
	case ctx.Err() != nil:
		r.problem = "interrupted"
	case runCtx.Err() != nil:
		r.problem = "weir serve died during the suite"
	case timedOut:
		r.problem = fmt.Sprintf("killed after %s", timeout+2*time.Minute)
	case strings.Contains(r.pkgOutput, "panic: test timed out") || anyOutputHas(r.failed, "panic: test timed out"):
		r.problem = fmt.Sprintf("timed out (-test.timeout=%s)", timeout)
	case runErr != nil && len(r.failed) == 0:
		// Non-zero exit with no failed test: TestMain, flags or a crash.
		r.problem = fmt.Sprintf("binary exited: %v", runErr)
	case runErr == nil && res.PkgAction != "pass" && len(r.failed) == 0:
		r.problem = "no final result from the test binary"
	}
	if runErr != nil && len(r.failed) > 0 && r.problem == "" {
		for _, t := range r.failed {
			if t.Action == "" {
				r.problem = "crashed during " + t.Name
				break
			}
		}
	}
	return r
}

func anyOutputHas(tests []*driver.TestResult, s string) bool {
	for _, t := range tests {
		if strings.Contains(t.Output(), s) {
			return true
		}
	}
	return false
}

// cutGoroutineDump drops the goroutine dump after a panic (a timeout, say),
// which would otherwise fill the tail of a failed test's output.
func cutGoroutineDump(out, suite string) string {
	p := strings.Index(out, "panic: ")
	if p < 0 {
		return out
	}
	g := strings.Index(out[p:], "\ngoroutine ")
	if g < 0 {
		return out
	}
	return out[:p+g] + fmt.Sprintf("\n(goroutine dump cut: see %s)", filepath.Join(*outDir, suite+".log"))
}

func note(r *suiteRun) string {
	var n []string
	if r.problem != "" {
		n = append(n, "SUITE FAILED: "+firstLine(r.problem))
	}
	if r.listed > 0 {
		n = append(n, fmt.Sprintf("%d skip-listed", r.listed))
	}
	if len(n) == 0 {
		return ""
	}
	return "  [" + strings.Join(n, "; ") + "]"
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func report(w io.Writer, runs []*suiteRun, serverProblems []string, ctxErr error) int {
	var p, f, k int
	bad := len(serverProblems) > 0 || ctxErr != nil

	// Failed tests first, with the tail of their output.
	for _, r := range runs {
		for _, t := range r.failed {
			fmt.Fprintf(w, "\n--- FAIL: %s %s (%s)\n", r.suite.Name, t.Name, t.Status())
			out := t.Output()
			if t.Action == "" && r.pkgOutput != "" {
				out += r.pkgOutput
			}
			out = cutGoroutineDump(out, r.suite.Name)
			fmt.Fprintln(w, indent(driver.TailLines(out, *tailLines)))
		}
		if r.problem != "" && len(r.failed) == 0 {
			fmt.Fprintf(w, "\n--- SUITE FAILED: %s: %s\n", r.suite.Name, r.problem)
			fmt.Fprintln(w, indent(driver.TailLines(r.pkgOutput, *tailLines)))
		}
	}
	for _, sp := range serverProblems {
		fmt.Fprintf(w, "\n--- SERVER: %s\n", sp)
	}

	fmt.Fprintln(w)
	row := func(a, b, c, d, e, f string) {
		fmt.Fprintf(w, "%-12s | %6s | %6s | %7s | %6s |%s\n", a, b, c, d, e, f)
	}
	row("suite", "passed", "failed", "skipped", "time", "")
	fmt.Fprintln(w, strings.Repeat("-", 12)+"-+-"+strings.Repeat("-", 6)+"-+-"+strings.Repeat("-", 6)+"-+-"+strings.Repeat("-", 7)+"-+-"+strings.Repeat("-", 6)+"-+")
	for _, r := range runs {
		sk := len(r.skipped) + r.listed
		row(r.suite.Name, fmt.Sprint(len(r.passed)), fmt.Sprint(len(r.failed)), fmt.Sprint(sk),
			fmt.Sprint(r.wall.Round(time.Second)), note(r))
		p += len(r.passed)
		f += len(r.failed)
		k += sk
		if r.problem != "" || len(r.failed) > 0 {
			bad = true
		}
	}
	fmt.Fprintln(w, "(skipped counts tests that called t.Skip plus skip-listed tests; see conformance/skiplist.txt)")
	for _, r := range runs {
		if len(r.stale) > 0 {
			fmt.Fprintf(w, "warning: skiplist entries for %s name no test in the binary: %s\n", r.suite.Name, strings.Join(r.stale, " "))
		}
	}
	if ctxErr != nil {
		fmt.Fprintf(w, "interrupted: %v\n", ctxErr)
	}
	fmt.Fprintf(w, "conformance: %d passed, %d failed, %d skipped\n", p, f, k)
	writeSummary(runs, p, f, k)
	if bad {
		return 1
	}
	return 0
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// writeSummary leaves a machine-readable summary next to the logs.
func writeSummary(runs []*suiteRun, p, f, k int) {
	root, err := driver.ModuleRoot()
	if err != nil {
		return
	}
	type suiteSum struct {
		Suite                   string
		Passed, Failed, Skipped int
		FailedTests             []string `json:",omitempty"`
		Problem                 string   `json:",omitempty"`
		Seconds                 float64
	}
	var sum struct {
		Passed, Failed, Skipped int
		Suites                  []suiteSum
	}
	sum.Passed, sum.Failed, sum.Skipped = p, f, k
	for _, r := range runs {
		s := suiteSum{Suite: r.suite.Name, Passed: len(r.passed), Failed: len(r.failed),
			Skipped: len(r.skipped) + r.listed, Problem: r.problem, Seconds: r.wall.Seconds()}
		for _, t := range r.failed {
			s.FailedTests = append(s.FailedTests, t.Name)
		}
		sum.Suites = append(sum.Suites, s)
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	dir := *outDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "conform:", err)
	}
}
