// Command spbench measures savepoints of the stateful benchmark's state
// (bench/internal/statepipe: the window pipeline of statebench, a per-key
// count in ValueState and an event-time timer per key) at --keys keys, on
// weir embedded, with checkpoints to a file:// directory:
//
//   - savepoint duration (request → complete over weir's savepoint
//     service, weir.v1.Savepoints/Take) and size on disk, beside the size
//     of the checkpoint it was written from;
//   - the job's throughput while savepoints are written back to back,
//     against the same job with checkpoints only, in paired windows of one
//     run, judged by the median ratio (target >= --min_ratio);
//   - restore time from the last savepoint into twice the parallelism,
//     against recovery from the checkpoint of the same state at the same
//     parallelism (--resume), in paired rounds, judged by the median ratio
//     (target < --max_restore_ratio).
//
// Each job runs in its own process (this binary re-executed with
// --child=run or --child=restore). The generator is given far more events
// than the measurements need (--events) and every job is cancelled once
// measured, so nothing waits for a billion events or a million timers.
// A missed target prints FAIL and exits 1; so do errors.
//
//	go run ./bench/cmd/spbench                          # 1M keys, 3 pairs of 10 s windows, 3 restore rounds
//	go run ./bench/cmd/spbench --keys=100000 --window=5s --pairs=1 --rounds=1   # quick
//	go run ./bench/cmd/spbench --cpuprofile=/tmp/sp     # /tmp/sp.run, /tmp/sp.restore-chk-1, ...
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"

	"github.com/weir-runner/weir/bench/internal/childproc"
	"github.com/weir-runner/weir/bench/internal/statepipe"
)

var (
	keys       = flag.Int64("keys", 1000000, "distinct keys of the state (event i has key i mod keys)")
	events     = flag.Int64("events", 0, "events the generator would emit (0: 2001 × --keys); jobs are cancelled once measured, so this only has to outlast the measurements")
	span       = flag.Duration("span", time.Minute, "event times are spread over one fixed window this long")
	splits     = flag.Int64("splits", 2, "initial restrictions of the generator (with the default --events, 2 start half the keys apart)")
	par        = flag.Int("base_parallelism", 2, "parallelism of the measured job and of the checkpoint recovery; the savepoint is restored into twice this")
	ckEvery    = flag.Duration("checkpoint_every", 10*time.Second, "checkpoint interval of every job (weir's default for streaming jobs)")
	windowLen  = flag.Duration("window", 30*time.Second, "length of a throughput window: one of savepoints takes them back to back until this has passed and the last completes; one with checkpoints only lasts this, or as long as the last savepoint window if that was longer")
	pairs      = flag.Int("pairs", 3, "paired throughput windows (checkpoints only, savepoints back to back), order alternating")
	rounds     = flag.Int("rounds", 3, "paired restore rounds (checkpoint recovery, savepoint restore), order alternating")
	minRatio   = flag.Float64("min_ratio", 0.8, "target: median throughput with savepoints / with checkpoints only at least this")
	maxRestore = flag.Float64("max_restore_ratio", 2, "target: median savepoint restore time / checkpoint recovery time under this")
	timeout    = flag.Duration("timeout", 10*time.Minute, "timeout of one child")
	inbox      = flag.Int("inbox_messages", 0, "experiment: the engine's inbox size in messages (engine.Limits.InboxSize; 0: its default); aligned barriers wait behind what inboxes hold")
	tmpFlag    = flag.String("tmp", "", "directory for checkpoints, savepoints and job state (default: a new temporary directory, removed at exit)")
	keep       = flag.Bool("keep", false, "keep the temporary directory (the run's checkpoints and savepoints) at exit, to rerun a restore child by hand")
	logDir     = flag.String("logs", "", "keep each child's log here (default: kept only when a child fails)")
	cpuProfile = flag.String("cpuprofile", "", "write each child's CPU profile to this path with the child's name appended")
	child      = flag.String("child", "", "internal: run one job in this process (run or restore) and report")
	spTarget   = flag.String("sp_target", "", "internal: where the run child's savepoints go (a file:// URL)")
	spType     = flag.String("type", "canonical", "the savepoints' type: canonical (records) or native (the subtasks' Pebble files)")
)

const (
	reportTag = "SPBENCH-REPORT "
	jobName   = "spbench"
)

func main() {
	flag.Parse()
	beam.Init() // a worker started by a runner stops here
	if *events == 0 {
		// Two restrictions of (2001 × keys) / 2 events start keys/2 apart,
		// so the state holds every key once each has run keys/2 events.
		*events = 2001 * *keys
	}
	if *keys <= 0 || *events < 2**keys || *par <= 0 || *pairs <= 0 || *rounds <= 0 || *windowLen <= 0 {
		fmt.Fprintln(os.Stderr, "spbench: --keys, --base_parallelism, --pairs, --rounds and --window must be positive and --events at least twice --keys")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *child != "" {
		if err := childMain(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "spbench (%s): %v\n", *child, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(runParent(ctx, os.Stdout))
}

func spec() statepipe.Spec {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return statepipe.Spec{Events: *events, Keys: *keys, StartMillis: start.Truncate(*span).UnixMilli(), SpanMillis: span.Milliseconds(), Splits: *splits}
}

// childMain runs a child and prints its report.
func childMain(ctx context.Context) error {
	stopProfile, err := childproc.CPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	rep, err := runChild(ctx, *child)
	if err != nil {
		return err
	}
	js, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", reportTag, js)
	return nil
}

// bench is the parent's run: its directories and children.
type bench struct {
	self, tmp, logs string
	keepLogs        bool
	common          []string // flags of every child
}

func runParent(ctx context.Context, w io.Writer) int {
	b, err := newBench()
	if err != nil {
		fmt.Fprintln(os.Stderr, "spbench:", err)
		return 2
	}
	defer b.close()
	res, err := b.run(ctx)
	if res != nil {
		if !printReport(w, res) {
			err = errors.Join(err, errors.New("a target was missed"))
		}
	}
	if err != nil {
		fmt.Fprintf(w, "\nspbench: %v\nchild logs in %s\n", err, b.logs)
		b.keepLogs = true
		return 1
	}
	return 0
}

func newBench() (*bench, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b := &bench{self: self, logs: *logDir, keepLogs: *logDir != ""}
	if b.tmp = *tmpFlag; b.tmp == "" {
		if b.tmp, err = os.MkdirTemp("", "spbench-"); err != nil {
			return nil, err
		}
	} else if b.tmp, err = os.MkdirTemp(*tmpFlag, "spbench-"); err != nil {
		return nil, err
	}
	if b.logs == "" {
		b.logs = filepath.Join(b.tmp, "logs")
	}
	if err := os.MkdirAll(b.logs, 0o755); err != nil {
		return nil, err
	}
	b.common = []string{
		fmt.Sprintf("--keys=%d", *keys), fmt.Sprintf("--events=%d", *events), "--span=" + span.String(),
		fmt.Sprintf("--splits=%d", *splits), "--job_name=" + jobName, "--checkpointing_interval=" + ckEvery.String(),
		fmt.Sprintf("--inbox_messages=%d", *inbox), "--type=" + *spType,
	}
	return b, nil
}

// close removes the temporary directory, keeping the logs in it if they
// are wanted (a failure) and were not asked for elsewhere.
func (b *bench) close() {
	if *keep {
		fmt.Fprintf(os.Stderr, "spbench: kept %s\n", b.tmp)
		return
	}
	if b.keepLogs && strings.HasPrefix(b.logs, b.tmp) {
		entries, _ := os.ReadDir(b.tmp)
		for _, e := range entries {
			if p := filepath.Join(b.tmp, e.Name()); p != b.logs {
				os.RemoveAll(p)
			}
		}
		return
	}
	os.RemoveAll(b.tmp)
}

// results is everything measured.
type results struct {
	run      *childReport
	restores []restoreRound
}

// restoreRound is one paired restore round.
type restoreRound struct {
	chk, sp  float64 // seconds
	chkFirst bool
}

func (b *bench) run(ctx context.Context) (*results, error) {
	chk := "file://" + filepath.Join(b.tmp, "checkpoints")
	fmt.Fprintf(os.Stderr, "== run: %d keys, parallelism %d, %d pairs of %s windows\n", *keys, *par, *pairs, *windowLen)
	run, err := b.child(ctx, "run", "run", fmt.Sprintf("--parallelism=%d", *par), "--checkpoint_dir="+chk,
		fmt.Sprintf("--pairs=%d", *pairs), "--window="+windowLen.String(),
		"--sp_target=file://"+filepath.Join(b.tmp, "savepoints"))
	if err != nil {
		return nil, err
	}
	res := &results{run: run}
	for round := 1; round <= *rounds; round++ {
		r := restoreRound{chkFirst: round%2 == 1}
		for _, fromChk := range []bool{r.chkFirst, !r.chkFirst} {
			var secs float64
			if fromChk {
				secs, err = b.recoverCheckpoint(ctx, round)
				r.chk = secs
			} else {
				secs, err = b.restoreSavepoint(ctx, round, run.Final.Path)
				r.sp = secs
			}
			if err != nil {
				return res, err
			}
		}
		fmt.Fprintf(os.Stderr, "   round %d: checkpoint %.2f s, savepoint %.2f s\n", round, r.chk, r.sp)
		res.restores = append(res.restores, r)
	}
	return res, nil
}

// recoverCheckpoint starts the job with --resume from a copy of the run's
// checkpoints (each round from the same checkpoint) at the run's
// parallelism.
func (b *bench) recoverCheckpoint(ctx context.Context, round int) (float64, error) {
	dir := filepath.Join(b.tmp, fmt.Sprintf("resume-%d", round))
	if err := copyDir(filepath.Join(b.tmp, "checkpoints"), dir); err != nil {
		return 0, fmt.Errorf("copying the checkpoints: %w", err)
	}
	defer os.RemoveAll(dir)
	rep, err := b.child(ctx, fmt.Sprintf("restore-chk-%d", round), "restore", fmt.Sprintf("--parallelism=%d", *par),
		"--checkpoint_dir=file://"+dir, "--resume")
	if err != nil {
		return 0, err
	}
	return rep.ReadySecs, nil
}

// restoreSavepoint starts the job from savepoint path at twice the run's
// parallelism, checkpointing to a new directory as the run did.
func (b *bench) restoreSavepoint(ctx context.Context, round int, path string) (float64, error) {
	dir := filepath.Join(b.tmp, fmt.Sprintf("from-savepoint-%d", round))
	defer os.RemoveAll(dir)
	rep, err := b.child(ctx, fmt.Sprintf("restore-sp-%d", round), "restore", fmt.Sprintf("--parallelism=%d", 2**par),
		"--checkpoint_dir=file://"+dir, "--savepoint_path="+path)
	if err != nil {
		return 0, err
	}
	return rep.ReadySecs, nil
}

// child re-executes this binary as child mode, named name, and returns its
// report.
func (b *bench) child(ctx context.Context, name, mode string, extra ...string) (*childReport, error) {
	logPath := filepath.Join(b.logs, name+".log")
	tmp := filepath.Join(b.tmp, "tmp-"+name) // the job's Pebble state
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := append([]string{"--child=" + mode}, b.common...)
	if *cpuProfile != "" {
		args = append(args, "--cpuprofile="+*cpuProfile+"."+name)
	}
	args = append(append(args, extra...), flag.Args()...)
	out, err := childproc.Run{Self: b.self, Args: args, LogPath: logPath, TempDir: tmp, Timeout: *timeout}.Start(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w\n%s", name, err, childproc.Tail(logPath, 20))
	}
	rep := &childReport{}
	if found, err := childproc.Report(out.Stdout, reportTag, rep); err != nil || !found {
		return nil, fmt.Errorf("%s: no report (%v)\n%s", name, err, childproc.Tail(logPath, 20))
	}
	return rep, nil
}

// copyDir copies the files under src to dst.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
