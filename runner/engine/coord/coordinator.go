package coord

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/weir-runner/weir/checkpoint"
)

// Options are the coordinator's timing and retention.
type Options struct {
	// Interval between checkpoint starts (0: none are started).
	Interval time.Duration
	// Timeout aborts a checkpoint that has not completed.
	Timeout time.Duration
	// MinPause is the least time from the end of one checkpoint to the
	// start of the next.
	MinPause time.Duration
	// Retained is how many completed checkpoints are kept.
	Retained int
}

// Stats describe one checkpoint.
type Stats struct {
	ID        int64
	Started   time.Time
	Duration  time.Duration
	Alignment time.Duration // the longest alignment of any subtask
	Uploaded  int64         // bytes uploaded
	FullSize  int64         // bytes of all the files it references
	Subtasks  int
	Failed    string // why it was aborted; "" if it completed
}

// Kind says what an Action asks the shell to do.
type Kind uint8

const (
	// Trigger: send barrier Chk to Subtask, whose inputs have all ended
	// (no sender is left to bring it).
	Trigger Kind = iota
	// Commit: write checkpoint Chk's metadata from Commit, then report
	// Committed or CommitFailed.
	Commit
	// Report: checkpoint Stats.ID completed or was aborted.
	Report
	// Finalize: the bundles Fins hold effects that are final now (Chk: the
	// checkpoint that holds them).
	Finalize
	// Retain: keep the checkpoints Recent (newest last), delete older ones.
	Retain
	// Discard: delete what aborted checkpoint Chk wrote.
	Discard
)

func (k Kind) String() string {
	return [...]string{"trigger", "commit", "report", "finalize", "retain", "discard"}[k]
}

// Action is one thing the shell must do, in the order returned.
type Action[F any] struct {
	Kind    Kind
	Chk     int64
	Subtask checkpoint.SubtaskID // Trigger
	Commit  *ToCommit            // Commit
	Stats   Stats                // Report
	Fins    []F                  // Finalize
	Recent  []*checkpoint.Metadata
}

// ToCommit is what a checkpoint's metadata records of its subtasks and
// its run; the shell adds the job's own fields.
type ToCommit struct {
	Subtasks  []checkpoint.SubtaskState // sorted by stage, then subtask
	Started   time.Time
	Alignment time.Duration
	Uploaded  int64
}

// Coordinator decides a job's checkpoints. F is the shell's handle of a
// bundle that waits for finalization; the coordinator only carries it to
// the Finalize action of the first completed checkpoint that holds the
// bundle's effects (rolled forward past aborted ones), or to JobDone.
type Coordinator[F any] struct {
	o        Options
	subtasks map[checkpoint.SubtaskID]*sub
	ids      []checkpoint.SubtaskID // sorted: actions come out in one order
	pending  *pending[F]
	nextID   int64
	// lastStart: checkpoints start every Interval (start to start), at
	// least MinPause after the last one ended (lastEnd).
	lastStart, lastEnd time.Time
	recent             []*checkpoint.Metadata // the last committed, newest last
	// leftover: finalizations due at the first completed checkpoint whose
	// ID is at least from (or at the job's end).
	leftover []leftover[F]
	// The stage graph: a subtask whose upstream subtasks have all finished
	// has only ended input left (in flight), so it can be triggered.
	upstream, downstream map[string][]string
	ofStage              map[string][]checkpoint.SubtaskID
}

type sub struct {
	kg       checkpoint.KeyGroupRange
	ended    bool // all inputs have ended: barriers come from the coordinator
	finished bool
}

type pending[F any] struct {
	id        int64
	started   time.Time
	acks      map[checkpoint.SubtaskID]checkpoint.SubtaskState
	snapped   map[checkpoint.SubtaskID]bool
	finalize  []F
	alignment time.Duration
	uploaded  int64
	// committing: the commit is under way; only its outcome ends the
	// checkpoint (a timeout must not discard files it is committing).
	committing bool
}

type leftover[F any] struct {
	f    F
	from int64
}

// New makes a coordinator whose next checkpoint is nextID, at now.
func New[F any](o Options, nextID int64, now time.Time) *Coordinator[F] {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Retained <= 0 {
		o.Retained = 1
	}
	return &Coordinator[F]{o: o, subtasks: map[checkpoint.SubtaskID]*sub{}, nextID: nextID, lastStart: now, lastEnd: now,
		upstream: map[string][]string{}, downstream: map[string][]string{}, ofStage: map[string][]checkpoint.SubtaskID{}}
}

// AddSubtask adds a subtask that owns key groups kg.
func (c *Coordinator[F]) AddSubtask(id checkpoint.SubtaskID, kg checkpoint.KeyGroupRange) {
	c.subtasks[id] = &sub{kg: kg}
	c.ofStage[id.Stage] = append(c.ofStage[id.Stage], id)
	c.ids = append(c.ids, id)
	slices.SortFunc(c.ids, compareIDs)
}

// AddEdge records that stage from feeds stage to.
func (c *Coordinator[F]) AddEdge(from, to string) {
	c.downstream[from] = append(c.downstream[from], to)
	c.upstream[to] = append(c.upstream[to], from)
}

// Next is the ID the next checkpoint will take.
func (c *Coordinator[F]) Next() int64 { return c.nextID }

// Pending is the checkpoint under way (0: none).
func (c *Coordinator[F]) Pending() int64 {
	if c.pending == nil {
		return 0
	}
	return c.pending.id
}

// Tick is the passing of time: it starts a checkpoint when one is due and
// aborts the pending one when it has timed out.
func (c *Coordinator[F]) Tick(now time.Time) []Action[F] {
	if c.o.Interval <= 0 {
		return nil
	}
	switch p := c.pending; {
	case p != nil && !p.committing && now.Sub(p.started) > c.o.Timeout:
		return c.abort(nil, fmt.Errorf("timed out after %s", c.o.Timeout), now)
	case p == nil && now.Sub(c.lastStart) >= c.o.Interval && now.Sub(c.lastEnd) >= c.o.MinPause:
		return c.Start(now)
	}
	return nil
}

// Start starts a checkpoint now (unless one is under way or every subtask
// has finished): subtasks that have finished acknowledge at once, those
// whose inputs have ended are triggered, the others wait for the barriers
// their senders bring.
func (c *Coordinator[F]) Start(now time.Time) []Action[F] {
	if c.pending != nil {
		return nil
	}
	live := 0
	for _, s := range c.subtasks {
		if !s.finished {
			live++
		}
	}
	if live == 0 {
		return nil // the job is ending
	}
	c.lastStart = now
	p := &pending[F]{id: c.nextID, started: now, acks: map[checkpoint.SubtaskID]checkpoint.SubtaskState{}, snapped: map[checkpoint.SubtaskID]bool{}}
	c.nextID++
	c.pending = p
	var out []Action[F]
	for _, id := range c.ids {
		switch s := c.subtasks[id]; {
		case s.finished:
			p.acks[id] = checkpoint.SubtaskState{SubtaskID: id, KeyGroups: s.kg, Finished: true}
		case s.ended:
			out = append(out, Action[F]{Kind: Trigger, Chk: p.id, Subtask: id})
		}
	}
	return out
}

// Ended: all inputs of subtask id have ended.
func (c *Coordinator[F]) Ended(id checkpoint.SubtaskID) []Action[F] {
	c.subtasks[id].ended = true
	if p := c.pending; p != nil && !p.snapped[id] {
		return []Action[F]{{Kind: Trigger, Chk: p.id, Subtask: id}}
	}
	return nil
}

// Holds is the first checkpoint that will hold the effects of what
// subtask id has done so far: the pending one if it has not taken the
// subtask's snapshot, else the next to start. (A checkpoint that took the
// snapshot before the subtask's last bundles does not hold them: their
// finalization waits for the next one, which records the subtask
// finished.)
func (c *Coordinator[F]) Holds(id checkpoint.SubtaskID) int64 {
	if p := c.pending; p != nil && !p.snapped[id] {
		return p.id
	}
	return c.nextID
}

// Finished: subtask id has ended its outputs and returned; fin are its
// bundles still waiting for finalization.
func (c *Coordinator[F]) Finished(id checkpoint.SubtaskID, fin []F) []Action[F] {
	s := c.subtasks[id]
	s.finished = true
	from := c.Holds(id)
	for _, f := range fin {
		c.leftover = append(c.leftover, leftover[F]{f: f, from: from})
	}
	var out []Action[F]
	for _, down := range c.downstream[id.Stage] {
		if !c.upstreamFinished(down) {
			continue
		}
		for _, d := range c.ofStage[down] {
			if ds := c.subtasks[d]; !ds.ended {
				ds.ended = true // its input is all in flight
				if p := c.pending; p != nil && !p.snapped[d] {
					out = append(out, Action[F]{Kind: Trigger, Chk: p.id, Subtask: d})
				}
			}
		}
	}
	p := c.pending
	if p == nil || p.snapped[id] {
		return out
	}
	p.snapped[id] = true
	p.acks[id] = checkpoint.SubtaskState{SubtaskID: id, KeyGroups: s.kg, Finished: true}
	return append(out, c.maybeCommit()...)
}

func (c *Coordinator[F]) upstreamFinished(stage string) bool {
	for _, up := range c.upstream[stage] {
		for _, id := range c.ofStage[up] {
			if !c.subtasks[id].finished {
				return false
			}
		}
	}
	return true
}

// Aligned: a subtask waited took to align barrier chk.
func (c *Coordinator[F]) Aligned(chk int64, took time.Duration) {
	if p := c.pending; p != nil && p.id == chk {
		p.alignment = max(p.alignment, took)
	}
}

// Snapshot: subtask id took its part of checkpoint chk, after the bundles
// fin. It reports whether chk still waits for it: if so the shell uploads
// the part and reports Acked; if not (chk was aborted) the part is not
// needed, and fin wait for the next checkpoint, which holds their effects
// too.
func (c *Coordinator[F]) Snapshot(chk int64, id checkpoint.SubtaskID, fin []F) bool {
	p := c.pending
	if p == nil || p.id != chk {
		c.rollForward(fin, chk)
		return false
	}
	p.snapped[id] = true
	p.finalize = append(p.finalize, fin...)
	return true
}

// Acked: subtask id's part of checkpoint chk is uploaded (uploaded bytes)
// and st records it.
func (c *Coordinator[F]) Acked(chk int64, id checkpoint.SubtaskID, st checkpoint.SubtaskState, uploaded int64) []Action[F] {
	p := c.pending
	if p == nil || p.id != chk {
		return nil
	}
	st.SubtaskID, st.KeyGroups = id, c.subtasks[id].kg
	p.acks[id] = st
	p.uploaded += uploaded
	return c.maybeCommit()
}

// maybeCommit asks for the commit once every subtask has acknowledged.
func (c *Coordinator[F]) maybeCommit() []Action[F] {
	p := c.pending
	if p == nil || p.committing || len(p.acks) < len(c.subtasks) {
		return nil
	}
	p.committing = true
	tc := &ToCommit{Started: p.started, Alignment: p.alignment, Uploaded: p.uploaded}
	for _, id := range c.ids {
		tc.Subtasks = append(tc.Subtasks, p.acks[id])
	}
	return []Action[F]{{Kind: Commit, Chk: p.id, Commit: tc}}
}

// Committed: checkpoint chk's metadata m is written, at now. The
// checkpoint's bundles, and finished subtasks' bundles it holds, are
// final.
func (c *Coordinator[F]) Committed(m *checkpoint.Metadata, now time.Time) []Action[F] {
	p := c.pending
	if p == nil || p.id != m.CheckpointID || !p.committing {
		return nil
	}
	c.pending = nil
	fin := p.finalize
	var kept []leftover[F]
	for _, l := range c.leftover {
		if l.from <= p.id {
			fin = append(fin, l.f)
		} else {
			kept = append(kept, l)
		}
	}
	c.leftover = kept
	c.lastEnd = now
	c.recent = append(c.recent, m)
	if n := len(c.recent) - c.o.Retained; n > 0 {
		c.recent = append([]*checkpoint.Metadata(nil), c.recent[n:]...)
	}
	st := Stats{ID: p.id, Started: p.started, Duration: now.Sub(p.started), Alignment: p.alignment, Uploaded: p.uploaded, FullSize: m.FullSize(), Subtasks: len(m.Subtasks)}
	return []Action[F]{
		{Kind: Report, Chk: p.id, Stats: st},
		{Kind: Finalize, Chk: p.id, Fins: fin},
		{Kind: Retain, Chk: p.id, Recent: c.recent},
	}
}

// CommitFailed: writing checkpoint chk's metadata failed; it is aborted.
func (c *Coordinator[F]) CommitFailed(chk int64, why error, now time.Time) []Action[F] {
	if p := c.pending; p != nil && p.id == chk {
		p.committing = false
	}
	return c.Abort(chk, why, now)
}

// Abort gives up checkpoint chk if it is pending and not committing: its
// bundles wait for the next checkpoint; the job goes on.
func (c *Coordinator[F]) Abort(chk int64, why error, now time.Time) []Action[F] {
	p := c.pending
	if p == nil || p.id != chk || p.committing {
		return nil
	}
	return c.abort(nil, why, now)
}

func (c *Coordinator[F]) abort(out []Action[F], why error, now time.Time) []Action[F] {
	p := c.pending
	c.pending = nil
	c.rollForward(p.finalize, p.id)
	c.lastEnd = now
	out = append(out, Action[F]{Kind: Report, Chk: p.id, Stats: Stats{ID: p.id, Started: p.started, Duration: now.Sub(p.started), Alignment: p.alignment, Uploaded: p.uploaded, Failed: why.Error()}})
	if !errors.Is(why, context.Canceled) {
		out = append(out, Action[F]{Kind: Discard, Chk: p.id, Stats: out[len(out)-1].Stats})
	}
	return out
}

// rollForward hands the finalizations of checkpoint chk, which will not
// complete, to the next checkpoint that does: every later checkpoint
// holds those bundles' effects (or the job's end does).
func (c *Coordinator[F]) rollForward(fin []F, chk int64) {
	for _, f := range fin {
		c.leftover = append(c.leftover, leftover[F]{f: f, from: chk + 1})
	}
}

// JobDone: every subtask has finished and no commit is under way. It
// returns the bundles still waiting for finalization: no restore can
// replay them any more. (A pending checkpoint may still commit; it
// finalizes nothing twice.)
func (c *Coordinator[F]) JobDone() []F {
	var fin []F
	if p := c.pending; p != nil {
		fin = append(fin, p.finalize...)
		p.finalize = nil
	}
	for _, l := range c.leftover {
		fin = append(fin, l.f)
	}
	c.leftover = nil
	return fin
}

func compareIDs(a, b checkpoint.SubtaskID) int {
	if a.Stage != b.Stage {
		if a.Stage < b.Stage {
			return -1
		}
		return 1
	}
	return a.Subtask - b.Subtask
}
