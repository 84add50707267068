package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/weir-runner/weir/bench/internal/paired"
)

// printReport prints the figures and judges the targets; it reports
// whether every target was met.
func printReport(w io.Writer, res *results) bool {
	ok := true
	run := res.run
	full := 2 * *keys
	fmt.Fprintf(w, "\nspbench: statebench's window pipeline (per-key count in ValueState, event-time timer per key) at %d keys;\n", *keys)
	fmt.Fprintf(w, "weir embedded, parallelism %d, a checkpoint every %s, checkpoints and savepoints on file://\n", *par, *ckEvery)

	cks := map[int64]ckStat{}
	for _, c := range run.Checkpoints {
		cks[c.ID] = c
	}
	fmt.Fprintf(w, "\nsavepoints (request → complete over weir.v1.Savepoints/Take; records: the counting DoFn's, a value and a timer per key):\n\n")
	fmt.Fprintf(w, "%-10s | %11s | %6s | %11s | %9s | %10s | %14s\n", "when", "events seen", "s", "MiB on disk", "records", "checkpoint", "checkpoint MiB")
	fmt.Fprintf(w, "%s\n", strings.Repeat("-", 86))
	var secs, mibs, ckMibs []float64
	partial := 0
	line := func(when string, sp spStat) {
		ck := "-"
		if c, found := cks[sp.Checkpoint]; found {
			ck = fmt.Sprintf("%.1f", mib(c.Bytes))
		}
		recs := fmt.Sprint(sp.Records)
		if sp.Records == nativeRecords {
			recs = "native"
		}
		fmt.Fprintf(w, "%-10s | %11d | %6.2f | %11.1f | %9s | %10d | %14s\n", when, sp.Seen, sp.Secs, mib(sp.Bytes), recs, sp.Checkpoint, ck)
		if sp.Records < full && sp.Records != nativeRecords {
			partial++
		} else {
			secs, mibs = append(secs, sp.Secs), append(mibs, mib(sp.Bytes))
			if c, found := cks[sp.Checkpoint]; found {
				ckMibs = append(ckMibs, mib(c.Bytes))
			}
		}
	}
	for i, win := range run.Windows {
		for _, sp := range win.Taken {
			line(fmt.Sprintf("window %d", i+1), sp)
		}
	}
	if n := len(run.Windows); n > 0 && !run.Windows[n-1].Savepoints {
		line("last", run.Final)
	}
	if partial > 0 {
		fmt.Fprintf(w, "\n%d savepoints held fewer than %d records: the state was not at %d keys: FAIL\n", partial, full, *keys)
		ok = false
	}
	if len(secs) > 0 {
		fmt.Fprintf(w, "\nsavepoint at %d keys: duration %s s, size %s MiB on disk (median, min–max of %d); the checkpoints they were written from: %s MiB\n",
			*keys, spread(secs, "%.2f"), spread(mibs, "%.1f"), len(secs), spread(ckMibs, "%.1f"))
	}
	var periodic []float64
	for _, c := range run.Checkpoints {
		periodic = append(periodic, c.Secs)
	}
	if len(periodic) > 0 {
		fmt.Fprintf(w, "checkpoints (every one the run completed, savepoints' included): %d, duration %s s\n", len(periodic), spread(periodic, "%.2f"))
	}

	fmt.Fprintf(w, "\nthroughput in paired windows of %s (events/s counted by the DoFn):\n\n", *windowLen)
	fmt.Fprintf(w, "%4s | %-26s | %16s | %21s | %10s | %5s\n", "pair", "order", "checkpoints only", "savepoints (taken)", "window s", "ratio")
	fmt.Fprintf(w, "%s\n", strings.Repeat("-", 96))
	var ratios []float64
	for i := 0; i+1 < len(run.Windows); i += 2 {
		a, b := run.Windows[i], run.Windows[i+1]
		order := "checkpoints, savepoints"
		if a.Savepoints {
			a, b, order = b, a, "savepoints, checkpoints"
		}
		r := b.rate() / a.rate()
		ratios = append(ratios, r)
		fmt.Fprintf(w, "%4d | %-26s | %16.0f | %13.0f (%5d) | %4.1f, %4.1f | %5.2f\n", i/2+1, order, a.rate(), b.rate(), len(b.Taken), a.Secs, b.Secs, r)
	}
	if len(ratios) == 0 {
		fmt.Fprintf(w, "\nno pair of windows: FAIL\n")
		ok = false
	} else {
		verdict := "PASS"
		if paired.Median(ratios) < *minRatio {
			verdict, ok = "FAIL", false
		}
		fmt.Fprintf(w, "\nthroughput while savepoints are written / with checkpoints only: %s (target >= %.1fx: %s)\n", paired.Format(ratios), *minRatio, verdict)
	}

	var latest int64
	for _, c := range run.Checkpoints {
		latest = max(latest, c.ID)
	}
	same := "the last savepoint's"
	if latest != run.Final.Checkpoint {
		same = fmt.Sprintf("not the last savepoint's (%d): a later one completed before the cancel", run.Final.Checkpoint)
	}
	fmt.Fprintf(w, "\nrestore, from beam.Run to the first event counted after the restore; checkpoint %d (%s) at parallelism %d, the last savepoint at parallelism %d:\n\n", latest, same, *par, 2**par)
	fmt.Fprintf(w, "%5s | %-22s | %14s | %13s | %5s\n", "round", "order", "checkpoint s", "savepoint s", "ratio")
	fmt.Fprintf(w, "%s\n", strings.Repeat("-", 72))
	var restore []float64
	for i, r := range res.restores {
		order := "checkpoint, savepoint"
		if !r.chkFirst {
			order = "savepoint, checkpoint"
		}
		restore = append(restore, r.sp/r.chk)
		fmt.Fprintf(w, "%5d | %-22s | %14.2f | %13.2f | %5.2f\n", i+1, order, r.chk, r.sp, r.sp/r.chk)
	}
	if len(restore) < *rounds {
		fmt.Fprintf(w, "\n%d of %d restore rounds ran: FAIL\n", len(restore), *rounds)
		ok = false
	}
	if len(restore) > 0 {
		verdict := "PASS"
		if paired.Median(restore) >= *maxRestore {
			verdict, ok = "FAIL", false
		}
		fmt.Fprintf(w, "\nrestore from the savepoint into parallelism %d / recovery from the checkpoint at %d: %s (target < %.1fx: %s)\n", 2**par, *par, paired.Format(restore), *maxRestore, verdict)
	}
	return ok
}

// spread prints the median and range of xs: "1.23 (1.10–1.40)".
func spread(xs []float64, f string) string {
	if len(xs) == 0 {
		return "-"
	}
	return fmt.Sprintf(f+" ("+f+"–"+f+")", paired.Median(xs), slices.Min(xs), slices.Max(xs))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
