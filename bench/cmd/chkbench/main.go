// Command chkbench measures weir's incremental checkpoints of Pebble state
// (package checkpoint) against the targets of issue 5: with 1 GiB of keyed
// state and about 1% of it changed per interval, each incremental checkpoint
// uploads under 10% of the full checkpoint's size and completes (p50) in
// under 1 s, and recovering that state into a running job takes under 20 s.
//
// It opens a state DB with the engine's options (state.Open, a shared
// 256 MiB block cache), fills it with --state_bytes of keys shaped like the
// engine's ValueState keys and --value_bytes of random (incompressible)
// bytes per value, and takes a full checkpoint. Then, --intervals times, it
// overwrites --change_pct percent of the keys, chosen at random, and takes an
// incremental checkpoint, each the way checkpoint/doc.go's "Life of a
// checkpoint" describes: Flush and Pebble Checkpoint (the synchronous part),
// Uploader.Upload, Commit of the Metadata, Uploader.Committed, then Retain of
// the newest checkpoint. For each it reports the bytes uploaded against the
// checkpoint's full size (the sum of its files' sizes) and the time from the
// flush to the committed checkpoint. By default (--settle) it waits after
// each checkpoint for Pebble's compactions to finish, as they would during a
// real interval, so their output is counted by the next checkpoint.
//
// Then the DB is closed and the last checkpoint recovered as a new process
// would: Latest, Restore into a new directory, state.Open with MustExist and
// a first read, timed together; then a sample of --verify_keys keys is read
// back and compared with the values last written, and a full scan counts
// every key. Finally the restored DB takes one more checkpoint with an
// Uploader seeded with the checkpoint it was restored from (reported apart).
//
// --storage=file (default) keeps checkpoints in a temporary directory
// (file://); --storage=gcs in an in-process fake-gcs-server (memory backend,
// no network). Everything lives under one temporary directory (--tmp), removed
// at exit. The process fails (exit 1) on any error or wrong value read back,
// and on a missed target, which it reports as FAIL.
//
//	go run ./bench/cmd/chkbench                                 # 1 GiB, 10 intervals of 1%, file://
//	go run ./bench/cmd/chkbench --state_bytes=64MiB --intervals=3
//	go run ./bench/cmd/chkbench --storage=gcs --state_bytes=256MiB
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Targets of issue 5.
const (
	targetUploadedPct = 10.0
	targetP50         = time.Second
	targetRecovery    = 20 * time.Second
)

func main() {
	cfg := defaultConfig()
	stateBytes := sizeFlag(cfg.StateBytes)
	cacheBytes := sizeFlag(cfg.CacheBytes)
	flag.Var(&stateBytes, "state_bytes", "logical state to load: keys plus values (accepts KiB, MiB, GiB suffixes)")
	flag.IntVar(&cfg.ValueBytes, "value_bytes", cfg.ValueBytes, "bytes per value (random, incompressible)")
	flag.IntVar(&cfg.Intervals, "intervals", cfg.Intervals, "incremental checkpoints after the first, full one")
	flag.Float64Var(&cfg.ChangePct, "change_pct", cfg.ChangePct, "percent of the keys overwritten (distinct, at random) before each incremental checkpoint")
	flag.StringVar(&cfg.Storage, "storage", cfg.Storage, "checkpoint storage: file (a temporary directory) or gcs (in-process fake GCS server)")
	flag.IntVar(&cfg.VerifyKeys, "verify_keys", cfg.VerifyKeys, "keys whose last value is kept in memory and checked after recovery")
	flag.BoolVar(&cfg.Settle, "settle", cfg.Settle, "after each checkpoint, wait until Pebble runs no compaction (as some time into an interval); the load is always waited for")
	flag.Var(&cacheBytes, "cache_bytes", "block cache of the DB and of the restored DB")
	flag.IntVar(&cfg.Concurrency, "concurrency", 0, "files hashed or uploaded at once by an Uploader (0: the package default)")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the keys chosen and the values written")
	flag.StringVar(&cfg.TempDir, "tmp", "", "parent of the temporary work directory (default: $TMPDIR or /tmp); needs about 3× --state_bytes free")
	quiet := flag.Bool("quiet", false, "no progress lines on stderr")
	flag.Parse()
	cfg.StateBytes, cfg.CacheBytes = int64(stateBytes), int64(cacheBytes)
	if !*quiet {
		cfg.Log = os.Stderr
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chkbench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	if err := cfg.check(); err != nil {
		fmt.Fprintf(os.Stderr, "chkbench: %v\n", err)
		os.Exit(2)
	}

	// Ctrl-C cancels the run, whose deferred cleanup removes the work directory.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chkbench: %v\n", err)
		os.Exit(1)
	}
	if v := printReport(os.Stdout, cfg, res); !v.UploadedOK || !v.P50OK || !v.RecoveryOK {
		os.Exit(1)
	}
}

// verdict is the outcome of the three targets.
type verdict struct {
	UploadedOK, P50OK, RecoveryOK bool
}

// printReport prints the per-checkpoint table and the figures against the
// targets, and returns the verdict.
func printReport(w io.Writer, cfg config, res *results) verdict {
	fmt.Fprintf(w, "chkbench: %s of state: %d keys of %d B + values of %d B; %d intervals changing %g%% of the keys each\n",
		mib(res.StateBytes), res.Keys, res.KeyBytes, cfg.ValueBytes, cfg.Intervals, cfg.ChangePct)
	fmt.Fprintf(w, "storage %s; settle=%v; %d CPUs (GOMAXPROCS %d), %s/%s, %s\n",
		res.StorageURL, cfg.Settle, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, runtime.Version())
	fmt.Fprintf(w, "load: %.1f s (%.0f MiB/s), compactions after it %.1f s\n\n",
		res.Load.Seconds(), float64(res.StateBytes)/(1<<20)/res.Load.Seconds(), res.LoadSettle.Seconds())

	fmt.Fprintln(w, "  chk  kind     changed keys  changed MiB  full MiB  uploaded MiB  uploaded %  files up/reused  MANIFEST KiB  flush+chk ms  upload ms  commit ms  total ms  retain ms  stored MiB  settle ms")
	for _, c := range res.Checkpoints {
		kind := "full"
		switch {
		case c.AfterRestore:
			kind = "restored"
		case c.Incremental:
			kind = "incr"
		}
		fmt.Fprintf(w, "  %3d  %-8s %12d  %11.1f  %8.1f  %12.2f  %9.2f%%  %7d/%-7d  %12.1f  %12d  %9d  %9d  %8d  %9d  %10.1f  %9d\n",
			c.ID, kind, c.ChangedKeys, mibf(c.ChangedBytes), mibf(c.FullBytes), mibf(c.UploadedBytes), c.uploadedPct(),
			c.UploadedFiles, c.ReusedFiles, float64(c.ManifestBytes)/1024,
			c.Sync.Milliseconds(), c.Upload.Milliseconds(), c.Commit.Milliseconds(), c.Total.Milliseconds(), c.Retain.Milliseconds(),
			mibf(c.StoredBytes), c.Settle.Milliseconds())
	}

	var v verdict
	incr := res.incremental()
	var ratios, written, amp []float64
	var totals, syncs []time.Duration
	var upSum, fullSum int64
	for _, c := range incr {
		ratios = append(ratios, c.uploadedPct())
		written = append(written, pct(c.WrittenBytes, c.FullBytes))
		amp = append(amp, float64(c.UploadedBytes)/float64(c.ChangedBytes))
		totals = append(totals, c.Total)
		syncs = append(syncs, c.Sync)
		upSum += c.UploadedBytes
		fullSum += c.FullBytes
	}
	fmt.Fprintf(w, "\nIncremental checkpoints (%d, each after changing %g%% of the keys):\n", len(incr), cfg.ChangePct)
	v.UploadedOK = slices.Max(ratios) < targetUploadedPct
	fmt.Fprintf(w, "  uploaded / full size      p50 %6.2f %%   max %6.2f %%   all together %6.2f %%   target < %g %% each: %s\n",
		p50(ratios), slices.Max(ratios), pct(upSum, fullSum), targetUploadedPct, passFail(v.UploadedOK))
	fmt.Fprintf(w, "    (all bytes written to storage, with file lists and metadata: p50 %.2f %%, max %.2f %%)\n", p50(written), slices.Max(written))
	fmt.Fprintf(w, "  uploaded / changed state  p50 %6.2f ×   max %6.2f ×   (what compactions add to the changed keys and values)\n", p50(amp), slices.Max(amp))
	v.P50OK = p50(totals) < targetP50
	fmt.Fprintf(w, "  flush → committed         p50 %6.3f s   max %6.3f s   target p50 < %v: %s (p50 is %.0f %% of it)\n",
		p50(totals).Seconds(), slices.Max(totals).Seconds(), targetP50, passFail(v.P50OK), 100*p50(totals).Seconds()/targetP50.Seconds())
	fmt.Fprintf(w, "  synchronous part          p50 %6.3f s   max %6.3f s   (Flush + Pebble Checkpoint)\n", p50(syncs).Seconds(), slices.Max(syncs).Seconds())

	r := res.Recovery
	v.RecoveryOK = r.Total < targetRecovery
	fmt.Fprintf(w, "\nRecovery of checkpoint %d (%s in %d files):\n", r.CheckpointID, mib(r.Bytes), r.Files)
	fmt.Fprintf(w, "  Latest %.3f s + Restore %.3f s (%.0f MiB/s) + Open %.3f s + first read %.2f ms = %.2f s   target < %v: %s (%.0f %% of it)\n",
		r.Latest.Seconds(), r.Restore.Seconds(), mibf(r.Bytes)/r.Restore.Seconds(), r.Open.Seconds(), float64(r.FirstRead.Microseconds())/1000,
		r.Total.Seconds(), targetRecovery, passFail(v.RecoveryOK), 100*r.Total.Seconds()/targetRecovery.Seconds())
	fmt.Fprintf(w, "  read %s from storage\n", mib(r.ReadBytes))
	fmt.Fprintf(w, "  verified %d sampled keys: last values read back (%.3f s); full scan: all %d keys present (%.2f s)\n",
		r.Verified, r.Verify.Seconds(), r.ScannedKeys, r.Scan.Seconds())

	if c := res.Checkpoints[len(res.Checkpoints)-1]; c.AfterRestore {
		fmt.Fprintf(w, "\nFirst checkpoint of the restored DB (checkpoint %d, after changing %g%% of the keys): uploaded %.2f %% of %s in %.3f s (upload %.3f s)\n",
			c.ID, cfg.ChangePct, c.uploadedPct(), mib(c.FullBytes), c.Total.Seconds(), c.Upload.Seconds())
	}
	fmt.Fprintf(w, "\nSummary: uploaded max %.2f %% (%s), p50 completion %.3f s (%s), recovery %.2f s (%s)\n",
		slices.Max(ratios), passFail(v.UploadedOK), p50(totals).Seconds(), passFail(v.P50OK), r.Total.Seconds(), passFail(v.RecoveryOK))
	return v
}

// p50 is the nearest-rank median: the smallest value with at least half of
// the values at or below it.
func p50[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[int(math.Ceil(0.5*float64(len(s))))-1]
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func mibf(n int64) float64 { return float64(n) / (1 << 20) }

// sizeFlag is a byte count with an optional KiB, MiB or GiB suffix.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f*float64(mult) > math.MaxInt64/2 {
		return fmt.Errorf("want a positive size like 1073741824, 64MiB or 1GiB")
	}
	*s = sizeFlag(f * float64(mult))
	return nil
}
