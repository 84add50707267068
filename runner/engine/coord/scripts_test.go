package coord

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/weir-runner/weir/checkpoint"
)

// TestScripts runs the scripts in testdata/: aligner/* drive an Aligner,
// coordinator/* a Coordinator, one event per command, and print what each
// decides. Run one alone with -run TestScripts/<dir>/<file>; rewrite the
// expected output with -rewrite.
func TestScripts(t *testing.T) {
	for _, dir := range []string{"aligner", "coordinator"} {
		t.Run(dir, func(t *testing.T) {
			datadriven.Walk(t, filepath.Join("testdata", dir), func(t *testing.T, path string) {
				switch dir {
				case "aligner":
					runAlignerScript(t, path)
				case "coordinator":
					runCoordinatorScript(t, path)
				}
			})
		})
	}
}

// at reads "t=<duration>" as a time after an arbitrary epoch.
func at(t *testing.T, d *datadriven.TestData) time.Time {
	t0 := time.Unix(1_000_000, 0)
	var s string
	if !d.MaybeScanArgs(t, "t", &s) {
		return t0
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: t=%s: %v", d.Pos, s, err)
	}
	return t0.Add(dur)
}

// scriptMsg is a message of an aligner script: "a:d1" data d1 from sender
// a on port 0, "s/1:d2" from s on port 1, "a:B3" barrier 3, "a:E" end of
// input, ":B4" barrier 4 from the coordinator.
type scriptMsg struct {
	Head
	text string
}

func parseMsg(tok string) scriptMsg {
	who, what, _ := strings.Cut(tok, ":")
	sender, port, _ := strings.Cut(who, "/")
	m := scriptMsg{Head: Head{Sender: sender}, text: what}
	if port != "" {
		m.Port, _ = strconv.Atoi(port)
	}
	switch what[0] {
	case 'B':
		m.Kind = Barrier
		m.Chk, _ = strconv.ParseInt(what[1:], 10, 64)
	case 'E':
		m.Kind = EOI
	case 'W':
		m.Kind = Watermark
	}
	return m
}

// runAlignerScript: "aligner senders=<n>[,<n>...]" makes one (senders per
// port); "deliver [t=<d>]" delivers the messages of its input in order at
// that time and prints what the task sees, and what the coordinator hears.
func runAlignerScript(t *testing.T, path string) {
	var a *Aligner[scriptMsg]
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		switch d.Cmd {
		case "aligner":
			var senders []int
			if d.HasArg("senders") {
				var s string
				d.ScanArgs(t, "senders", &s)
				for _, f := range strings.Split(s, ",") {
					n, _ := strconv.Atoi(f)
					senders = append(senders, n)
				}
			}
			a = NewAligner(senders, func(m scriptMsg) Head { return m.Head },
				func(chk int64) scriptMsg {
					return scriptMsg{Head: Head{Kind: Barrier, Chk: chk}, text: fmt.Sprint("B", chk)}
				})
			if a.Ended() {
				return "inputs ended\n"
			}
			return ""
		case "deliver":
			now := at(t, d)
			var b strings.Builder
			var seen []string
			for _, tok := range strings.Fields(d.Input) {
				r := a.Step(parseMsg(tok), now)
				for _, m := range r.Out {
					seen = append(seen, m.text)
				}
				for _, al := range r.Aligned {
					fmt.Fprintf(&b, "aligned %d after %s\n", al.Chk, al.Took)
				}
				for _, chk := range r.Abandoned {
					fmt.Fprintf(&b, "gave up %d\n", chk)
				}
				if r.Ended {
					b.WriteString("inputs ended\n")
				}
			}
			fmt.Fprintf(&b, "task sees: %s\n", strings.Join(seen, " "))
			if n := a.Held(); n > 0 {
				fmt.Fprintf(&b, "held: %d\n", n)
			}
			return b.String()
		}
		t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
		return ""
	})
}

// runCoordinatorScript drives a Coordinator whose finalizations are
// bundle names. Commands (subtasks are "stage/index"):
//
//	coordinator subtasks=a/0,a/1,b/0 [edges=a>b] [interval=..] [timeout=..] [min-pause=..] [retained=..] [next=..]
//	tick t=.. | start t=..
//	ended <subtask> | finished <subtask> [fin=x,y]
//	aligned chk=.. took=..
//	snapshot <subtask> chk=.. [fin=x,y]
//	acked <subtask> chk=.. [bytes=..]
//	committed chk=.. t=.. | commit-failed chk=.. | abort chk=.. t=..
//	holds <subtask> | jobdone
func runCoordinatorScript(t *testing.T, path string) {
	var c *Coordinator[string]
	toCommit := map[int64]*ToCommit{}
	subtask := func(d *datadriven.TestData) checkpoint.SubtaskID {
		if len(d.CmdArgs) == 0 {
			t.Fatalf("%s: %s names no subtask", d.Pos, d.Cmd)
		}
		return parseSubtask(d.CmdArgs[0].Key)
	}
	fins := func(d *datadriven.TestData) []string {
		if !d.HasArg("fin") {
			return nil
		}
		var s string
		d.ScanArgs(t, "fin", &s)
		return strings.Split(s, ",")
	}
	chk := func(d *datadriven.TestData) int64 {
		var n int64
		d.ScanArgs(t, "chk", &n)
		return n
	}
	dur := func(d *datadriven.TestData, key string) time.Duration {
		if !d.HasArg(key) {
			return 0
		}
		var s string
		d.ScanArgs(t, key, &s)
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %s=%s: %v", d.Pos, key, s, err)
		}
		return v
	}
	datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
		var acts []Action[string]
		switch d.Cmd {
		case "coordinator":
			o := Options{Interval: dur(d, "interval"), Timeout: dur(d, "timeout"), MinPause: dur(d, "min-pause")}
			if d.HasArg("retained") {
				d.ScanArgs(t, "retained", &o.Retained)
			}
			next := int64(1)
			if d.HasArg("next") {
				d.ScanArgs(t, "next", &next)
			}
			c = New[string](o, next, at(t, d))
			var subs, edges string
			d.ScanArgs(t, "subtasks", &subs)
			for i, s := range strings.Split(subs, ",") {
				c.AddSubtask(parseSubtask(s), checkpoint.KeyGroupRange{Start: i, End: i + 1})
			}
			if d.HasArg("edges") {
				d.ScanArgs(t, "edges", &edges)
				for _, e := range strings.Split(edges, ",") {
					from, to, _ := strings.Cut(e, ">")
					c.AddEdge(from, to)
				}
			}
			return ""
		case "tick":
			acts = c.Tick(at(t, d))
		case "start":
			acts = c.Start(at(t, d))
		case "ended":
			acts = c.Ended(subtask(d))
		case "finished":
			acts = c.Finished(subtask(d), fins(d))
		case "aligned":
			c.Aligned(chk(d), dur(d, "took"))
		case "snapshot":
			if !c.Snapshot(chk(d), subtask(d), fins(d)) {
				return "not wanted: its bundles wait for the next checkpoint\n"
			}
		case "acked":
			var n int64
			if d.HasArg("bytes") {
				d.ScanArgs(t, "bytes", &n)
			}
			acts = c.Acked(chk(d), subtask(d), checkpoint.SubtaskState{}, n)
		case "committed":
			id := chk(d)
			tc := toCommit[id]
			if tc == nil {
				t.Fatalf("%s: checkpoint %d was not asked to commit", d.Pos, id)
			}
			acts = c.Committed(&checkpoint.Metadata{CheckpointID: id, Subtasks: tc.Subtasks}, at(t, d))
		case "commit-failed":
			acts = c.CommitFailed(chk(d), errors.New("storage unavailable"), at(t, d))
		case "abort":
			acts = c.Abort(chk(d), errors.New("aborted by the script"), at(t, d))
		case "holds":
			return fmt.Sprintf("checkpoint %d\n", c.Holds(subtask(d)))
		case "jobdone":
			return fmt.Sprintf("finalize at the end: %s\n", strings.Join(c.JobDone(), " "))
		default:
			t.Fatalf("%s: unknown command %q", d.Pos, d.Cmd)
		}
		var b strings.Builder
		for _, a := range acts {
			if a.Kind == Commit {
				toCommit[a.Chk] = a.Commit
			}
			b.WriteString(formatAction(a))
			b.WriteByte('\n')
		}
		if p := c.Pending(); p != 0 {
			fmt.Fprintf(&b, "pending: %d\n", p)
		}
		return b.String()
	})
}

func parseSubtask(s string) checkpoint.SubtaskID {
	stage, i, _ := strings.Cut(s, "/")
	n, _ := strconv.Atoi(i)
	return checkpoint.SubtaskID{Stage: stage, Subtask: n}
}

func formatAction(a Action[string]) string {
	switch a.Kind {
	case Trigger:
		return fmt.Sprintf("trigger %s with barrier %d", a.Subtask, a.Chk)
	case Commit:
		var subs []string
		for _, s := range a.Commit.Subtasks {
			t := s.SubtaskID.String()
			if s.Finished {
				t += "(finished)"
			}
			subs = append(subs, t)
		}
		return fmt.Sprintf("commit %d: %s; alignment %s, %d bytes", a.Chk, strings.Join(subs, " "), a.Commit.Alignment, a.Commit.Uploaded)
	case Report:
		if a.Stats.Failed != "" {
			return fmt.Sprintf("report %d failed after %s: %s", a.Chk, a.Stats.Duration, a.Stats.Failed)
		}
		return fmt.Sprintf("report %d completed in %s", a.Chk, a.Stats.Duration)
	case Finalize:
		return fmt.Sprintf("finalize %d: %s", a.Chk, strings.Join(a.Fins, " "))
	case Retain:
		var ids []string
		for _, m := range a.Recent {
			ids = append(ids, fmt.Sprint(m.CheckpointID))
		}
		return fmt.Sprintf("retain %s", strings.Join(ids, " "))
	case Discard:
		return fmt.Sprintf("discard %d", a.Chk)
	}
	return a.Kind.String()
}
