package main

import (
	"strings"
	"testing"
)

// resultsWith is a run at --keys keys whose savepoints all hold every key,
// with throughput ratios b/a per pair and restore rounds (checkpoint,
// savepoint seconds).
func resultsWith(ratios []float64, restores [][2]float64) *results {
	full := 2 * *keys
	run := &childReport{Mode: "run", Checkpoints: []ckStat{{ID: 1, Secs: 2, Bytes: 80 << 20}, {ID: 2, Secs: 2, Bytes: 80 << 20}}}
	for i, r := range ratios {
		a := window{Secs: 10, Events: 100000}
		b := window{Savepoints: true, Secs: 10, Events: int64(r * 100000),
			Taken: []spStat{{Path: "file:///sp/x", Secs: 3, Seen: 1, Bytes: 84 << 20, Records: full, Checkpoint: 2}}}
		if i%2 == 0 {
			run.Windows = append(run.Windows, a, b)
		} else {
			run.Windows = append(run.Windows, b, a)
		}
	}
	run.Final = run.Windows[len(run.Windows)-1].Taken[0]
	res := &results{run: run}
	for i, r := range restores {
		res.restores = append(res.restores, restoreRound{chk: r[0], sp: r[1], chkFirst: i%2 == 0})
	}
	return res
}

// TestReportJudges: printReport passes only when the median throughput
// ratio is at least --min_ratio and the median restore ratio under
// --max_restore_ratio, every restore round ran and every savepoint held
// the whole state; a miss prints FAIL (and spbench exits 1 on it).
func TestReportJudges(t *testing.T) {
	*rounds = 3
	for _, c := range []struct {
		name     string
		ratios   []float64
		restores [][2]float64
		partial  bool
		pass     bool
	}{
		{"both met", []float64{0.7, 0.9, 0.85}, [][2]float64{{2, 3}, {2, 5}, {2, 3.5}}, false, true},
		{"throughput missed", []float64{0.7, 0.9, 0.75}, [][2]float64{{2, 3}, {2, 3}, {2, 3}}, false, false},
		{"restore missed", []float64{0.9, 0.9, 0.9}, [][2]float64{{2, 3}, {2, 4}, {2, 5}}, false, false},
		{"a restore round missing", []float64{0.9}, [][2]float64{{2, 3}, {2, 3}}, false, false},
		{"state not at every key", []float64{0.9}, [][2]float64{{2, 3}, {2, 3}, {2, 3}}, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := resultsWith(c.ratios, c.restores)
			if c.partial {
				res.run.Windows[1].Taken[0].Records = *keys
			}
			var out strings.Builder
			pass := printReport(&out, res)
			if pass != c.pass || strings.Contains(out.String(), "FAIL") == c.pass {
				t.Errorf("printReport = %v, want %v; printed:\n%s", pass, c.pass, out.String())
			}
		})
	}
}
