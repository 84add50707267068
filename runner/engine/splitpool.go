package engine

import (
	"context"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/wire"
)

// splitPool lets the subtasks of a splittable stage share work: a busy
// subtask splits its running bundle when a sibling is idle and puts the
// residual here; idle subtasks take it. The stage is done when every
// subtask is idle and nothing is queued.
//
// The pool also keeps what bounds the timestamps of work an idle subtask
// may still take: the watermark holds of queued residuals, and what each
// running sibling holds (see boundLocked). A subtask waiting in takeFor
// forwards that bound as its output watermark, so that a subtask without
// work of its own does not hold its consumers back until the stage ends.
type splitPool struct {
	clock   Clock // times its waits
	mu      sync.Mutex
	queue   [][]byte // chunks of whole elements
	holds   []int64  // the watermark hold of each queued chunk, in step with queue
	running int      // subtasks not waiting in take
	idle    int
	done    bool
	wake    chan struct{}

	subs []poolSub // by subtask index, for subtasks that say which they are
	// sent reads the output watermark subtask i last sent (nil: unknown,
	// taken as the minimum timestamp).
	sent func(i int) int64
}

// poolSub is what the pool knows of one subtask.
type poolSub struct {
	phase subPhase
	// hold bounds the timestamps of the work the subtask holds: in
	// subMain, the output watermark it last sent (as far as the pool has
	// looked); in subSplits, the holds of the work it took or deferred.
	hold int64
}

type subPhase uint8

const (
	subMain   subPhase = iota // in its run loop: its own input and work
	subIdle                   // waiting in take: no work at all
	subSplits                 // running work taken from the pool, or its residuals
)

// wmCheck is how often a waiting subtask looks at the output watermarks
// of siblings still in their run loops (they do not report to the pool).
const wmCheck = 20 * time.Millisecond

func newSplitPool(n int) *splitPool {
	p := &splitPool{clock: clockwork.NewRealClock(), running: n, wake: make(chan struct{}), subs: make([]poolSub, n)}
	for i := range p.subs {
		p.subs[i].hold = wire.MinTimestamp
	}
	return p
}

func (p *splitPool) broadcastLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// put queues residual work of unknown watermark hold; only a running
// subtask calls it.
func (p *splitPool) put(chunks ...[]byte) {
	holds := make([]int64, len(chunks))
	for i := range holds {
		holds[i] = wire.MinTimestamp
	}
	p.putHeld(chunks, holds)
}

// putFrom queues residual work that running subtask from split off: each
// chunk with its watermark hold, or where that is unknown
// (wire.MinTimestamp, as for whole input elements of a channel split), with
// what the putting subtask holds.
func (p *splitPool) putFrom(from int, chunks [][]byte, holds []int64) {
	p.mu.Lock()
	own := p.subHoldLocked(from)
	p.mu.Unlock()
	hs := make([]int64, len(chunks))
	for i := range hs {
		hs[i] = own
		if i < len(holds) && holds[i] > wire.MinTimestamp {
			hs[i] = holds[i]
		}
	}
	p.putHeld(chunks, hs)
}

func (p *splitPool) putHeld(chunks [][]byte, holds []int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, chunks...)
	p.holds = append(p.holds, holds...)
	p.broadcastLocked()
}

// wantsWork reports whether an idle sibling waits for work.
func (p *splitPool) wantsWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle > 0 && len(p.queue) == 0
}

// watchSent tells the pool how to read the output watermark a subtask
// last sent (the first caller's function stays).
func (p *splitPool) watchSent(sent func(i int) int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sent == nil {
		p.sent = sent
	}
}

// subHoldLocked bounds the timestamps of the work subtask i holds and of
// any work split off it later.
func (p *splitPool) subHoldLocked(i int) int64 {
	if i < 0 || i >= len(p.subs) {
		return wire.MinTimestamp
	}
	s := &p.subs[i]
	if s.phase == subMain && p.sent != nil {
		s.hold = max(s.hold, p.sent(i))
	}
	return s.hold
}

// boundLocked is the least timestamp of work subtask i may yet take from
// the pool: no earlier than a queued chunk's hold, nor than what a running
// sibling holds (whatever it splits off carries timestamps no earlier than
// its own hold). A sibling running work it took from the pool counts with
// the holds of that work, not with the output watermark it sends, which
// itself waits on the pool: two such siblings do not hold each other back.
// It is the maximum timestamp when no sibling runs and nothing is queued.
func (p *splitPool) boundLocked(i int) int64 {
	b := wire.MaxTimestamp
	if len(p.holds) < len(p.queue) {
		b = wire.MinTimestamp // chunks queued without a hold
	}
	for _, h := range p.holds {
		b = min(b, h)
	}
	for j := range p.subs {
		if j != i && p.subs[j].phase != subIdle {
			b = min(b, p.subHoldLocked(j))
		}
	}
	return b
}

// pollsLocked says whether subtask i's bound depends on a sibling still in
// its run loop, which does not report to the pool: it must be looked at
// from time to time.
func (p *splitPool) pollsLocked(i int) bool {
	if p.sent == nil {
		return false
	}
	for j := range p.subs {
		if j != i && p.subs[j].phase == subMain {
			return true
		}
	}
	return false
}

// watch returns subtask i's bound, a channel closed when the pool changes,
// and whether the bound must also be looked at every wmCheck.
func (p *splitPool) watch(i int) (bound int64, wake <-chan struct{}, poll bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.boundLocked(i), p.wake, p.pollsLocked(i)
}

// holding records the hold of the work subtask i, running what it took
// from the pool, still has (wire.MaxTimestamp: nothing left).
func (p *splitPool) holding(i int, hold int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.subs) || p.subs[i].phase != subSplits || p.subs[i].hold == hold {
		return
	}
	p.subs[i].hold = hold
	p.broadcastLocked() // siblings' bounds may have moved
}

// take waits for queued work; false means the whole stage is done.
func (p *splitPool) take(ctx context.Context) ([]byte, bool, error) {
	return p.takeFor(ctx, -1, nil)
}

// takeFor is take by subtask i (-1: unknown). While it waits, forward is
// called (without the pool's lock) with i's bound whenever that has risen
// since it was last called; its error ends the wait. It is the shell of
// the pool's decisions (enter, next): it only waits and forwards.
func (p *splitPool) takeFor(ctx context.Context, i int, forward func(bound int64) error) ([]byte, bool, error) {
	if !p.enter(i) {
		forward = nil
	}
	last := wire.MinTimestamp // the bound last forwarded
	for {
		s := p.next(i, last, forward != nil)
		switch {
		case s.took || s.done:
			return s.chunk, s.took, nil
		case s.forward:
			last = s.bound
			if err := forward(s.bound); err != nil {
				return nil, false, err
			}
			continue // the pool may have changed meanwhile
		}
		if err := p.wait(ctx, s); err != nil {
			return nil, false, err
		}
	}
}

// wait waits as s says: until the pool changes, or wmCheck has passed.
func (p *splitPool) wait(ctx context.Context, s poolStep) error {
	var tick <-chan time.Time
	if s.poll {
		timer := p.clock.NewTimer(wmCheck)
		defer timer.Stop()
		tick = timer.Chan()
	}
	select {
	case <-s.wake:
	case <-tick:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// enter makes subtask i (-1: unknown) idle, waiting for work; it reports
// whether the pool knows i.
func (p *splitPool) enter(i int) (known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.running--
	p.idle++
	if i < 0 || i >= len(p.subs) {
		return false
	}
	p.subs[i] = poolSub{phase: subIdle, hold: wire.MaxTimestamp}
	p.broadcastLocked() // siblings no longer wait on i's work
	return true
}

// poolStep is what a subtask waiting in the pool does next (next): take
// chunk, end (the whole stage is done), forward a bound that has risen,
// or wait until the pool changes (wake) or, if poll, wmCheck has passed.
type poolStep struct {
	chunk   []byte
	took    bool
	done    bool
	forward bool
	bound   int64
	wake    <-chan struct{}
	poll    bool
}

// next decides what waiting subtask i does next, given the bound it last
// forwarded (forwards: it forwards its bound at all). Taking a chunk makes
// it running again, with the chunk's hold.
func (p *splitPool) next(i int, last int64, forwards bool) poolStep {
	p.mu.Lock()
	defer p.mu.Unlock()
	known := i >= 0 && i < len(p.subs)
	if len(p.queue) > 0 {
		c, hold := p.queue[0], wire.MinTimestamp
		p.queue = p.queue[1:]
		if len(p.holds) > 0 {
			hold, p.holds = p.holds[0], p.holds[1:]
		}
		if len(p.queue) == 0 {
			p.queue, p.holds = nil, nil
		}
		p.running++
		p.idle--
		if known {
			p.subs[i] = poolSub{phase: subSplits, hold: hold}
		}
		return poolStep{chunk: c, took: true}
	}
	if p.running == 0 || p.done {
		if !p.done {
			p.done = true
			p.broadcastLocked()
		}
		return poolStep{done: true}
	}
	forwards = forwards && known
	if forwards {
		if b := p.boundLocked(i); b > last {
			return poolStep{forward: true, bound: b}
		}
	}
	return poolStep{wake: p.wake, poll: forwards && p.pollsLocked(i)}
}

// drainSplits runs work split off siblings' bundles until the whole
// stage is done. sent is the output watermark the subtask has sent so far.
//
// All its inputs have ended, so what it may still output comes from its
// deferred residuals and from work it takes from the pool; the pool bounds
// the timestamps of the latter (see splitPool.boundLocked). While it waits
// (idle, or for a deferred residual to be due) it advances its output
// watermark to the least of those, so that its consumers, which take the
// minimum over their senders, move on with its busy siblings instead of
// waiting for the end of the stage.
func (t *sdkTask) drainSplits(ctx context.Context, sent int64) error {
	p := t.split
	p.watchSent(t.sentWatermark)
	// forward sends the output watermark bound allows, if it is higher
	// than what was sent, and below the maximum until the stage ends.
	forward := func(bound int64) error {
		th, err := t.timerHold()
		if err != nil {
			return err
		}
		if wm := min(bound, t.hold(), th, wire.MaxTimestamp-1); wm > sent {
			sent = wm
			return t.out.control(ctx, msgWatermark, wm)
		}
		return nil
	}
	for {
		// Deferred residuals are this subtask's own work: finish them first.
		for len(t.delayed) > 0 {
			p.holding(t.index, t.hold())
			bound, wake, poll := p.watch(t.index)
			if err := forward(bound); err != nil {
				return err
			}
			if err := t.waitDelayed(ctx, wake, poll); err != nil {
				return err
			}
			t.readyDelayed(t.e.now())
			if err := t.flush(ctx); err != nil {
				return err
			}
		}
		c, ok, err := p.takeFor(ctx, t.index, forward)
		if err != nil || !ok {
			return err
		}
		t.pending, t.pendingBytes = [][]byte{c}, len(c)
		if err := t.flush(ctx); err != nil {
			return err
		}
	}
}

// waitDelayed waits until the next deferred residual is due, the split
// pool changes (wake), wmCheck passes (if poll), or the job is drained.
func (t *sdkTask) waitDelayed(ctx context.Context, wake <-chan struct{}, poll bool) error {
	d, ok := t.nextWake()
	if ok && d <= 0 {
		return nil
	}
	var due, tick <-chan time.Time
	if ok {
		timer := t.e.o.Clock.NewTimer(d)
		defer timer.Stop()
		due = timer.Chan()
	}
	if poll {
		timer := t.e.o.Clock.NewTimer(wmCheck)
		defer timer.Stop()
		tick = timer.Chan()
	}
	select {
	case <-due:
	case <-wake:
	case <-tick:
	case <-t.drainCh():
		t.startDrain()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// sentWatermark is the output watermark subtask i of the stage last sent.
func (t *sdkTask) sentWatermark(i int) int64 {
	return t.e.progress[t.stage].wms[i].Load()
}
