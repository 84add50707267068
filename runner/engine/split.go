package engine

import (
	"context"
	"sync"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/engine/harness"
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
// since it was last called; its error ends the wait.
func (p *splitPool) takeFor(ctx context.Context, i int, forward func(bound int64) error) ([]byte, bool, error) {
	p.mu.Lock()
	p.running--
	p.idle++
	known := i >= 0 && i < len(p.subs)
	if known {
		p.subs[i] = poolSub{phase: subIdle, hold: wire.MaxTimestamp}
		p.broadcastLocked() // siblings no longer wait on i's work
	} else {
		forward = nil
	}
	last := wire.MinTimestamp // the bound last forwarded
	for {
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
			p.mu.Unlock()
			return c, true, nil
		}
		if p.running == 0 || p.done {
			p.done = true
			p.broadcastLocked()
			p.mu.Unlock()
			return nil, false, nil
		}
		if forward != nil {
			if b := p.boundLocked(i); b > last {
				last = b
				p.mu.Unlock()
				if err := forward(b); err != nil {
					return nil, false, err
				}
				p.mu.Lock()
				continue // the pool may have changed meanwhile
			}
		}
		wake := p.wake
		var tick <-chan time.Time
		var timer clockwork.Timer
		if forward != nil && p.pollsLocked(i) {
			timer = p.clock.NewTimer(wmCheck)
			tick = timer.Chan()
		}
		p.mu.Unlock()
		select {
		case <-wake:
		case <-tick:
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil, false, context.Cause(ctx)
		}
		if timer != nil {
			timer.Stop()
		}
		p.mu.Lock()
	}
}

// splitter watches one running bundle of a splittable stage and splits
// it whenever a sibling subtask is idle.
//
// The SDK answers each split within what is still primary: a channel
// split's residual is the elements from its first residual element up to
// the previous split's, never those an earlier split already took. The
// splitter keeps that bound (end), and the primary roots that replace a
// split element, so that a failed bundle can be retried with exactly its
// primary: the residuals may already run elsewhere.
type splitter struct {
	t      *sdkTask
	w      harness.Worker
	elems  [][]byte // the bundle's input elements, in order
	instID chan string

	mu    sync.Mutex
	end   int64              // elements from end on were split off
	prim  map[int64][][]byte // primary roots replacing a split element
	local []splitWork        // residuals of checkpoint splits, run next by this subtask
}

// splitWork is one piece of work a split took away: a residual root
// (elem -1, with the watermark hold the SDK reported) or whole input
// element elem (hold wire.MinTimestamp: unknown).
type splitWork struct {
	data []byte
	elem int64
	hold int64
}

func newSplitter(t *sdkTask, w harness.Worker, input [][]byte) *splitter {
	s := &splitter{t: t, w: w, instID: make(chan string, 1)}
	for _, c := range input {
		_ = t.inWV.ForEach(c, func(e wire.Element) error {
			s.elems = append(s.elems, e.Raw)
			return nil
		})
	}
	s.end = int64(len(s.elems))
	return s
}

// A running splittable bundle is looked at every Limits.SplitCheck. It
// is checkpointed (split at fraction 0), so its outputs flow downstream
// and retries stay small, once it has run Limits.BundleTime, or earlier,
// once its output reaches Limits.BundleOutputBytes: a bundle's output is
// held in memory until it ends, and a fast source (a generator run in
// process) emits hundreds of megabytes in BundleTime.

func (s *splitter) residuals() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([][]byte, len(s.local))
	for i, w := range s.local {
		out[i] = w.data
	}
	return out
}

// settle drops from the checkpoint residuals the whole input elements the
// bundle went on to process after all: it ran read elements of its
// input. The Go SDK can answer a split at fraction 0 with a channel split
// at the element it is processing (rounding in its split arithmetic makes
// the sub-element fraction negative), and then still finish that element.
// It returns how many it dropped.
func (s *splitter) settle(read int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.local[:0]
	for _, w := range s.local {
		if w.elem < 0 || w.elem >= read {
			kept = append(kept, w)
		}
	}
	n := len(s.local) - len(kept)
	s.local = kept
	return n
}

// primary is the input that stayed with the bundle after its splits, as
// one chunk, and false if no split took any of its input.
func (s *splitter) primary() ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end == int64(len(s.elems)) && len(s.prim) == 0 {
		return nil, false
	}
	var c []byte
	for i := int64(0); i < s.end; i++ {
		if roots, ok := s.prim[i]; ok {
			for _, r := range roots {
				c = append(c, r...)
			}
			continue
		}
		c = append(c, s.elems[i]...)
	}
	if len(c) == 0 {
		return [][]byte{}, true
	}
	return [][]byte{c}, true
}

func (s *splitter) run(ctx context.Context, done <-chan struct{}) {
	var inst string
	select {
	case inst = <-s.instID:
	case <-done:
		return
	case <-ctx.Done():
		return
	}
	lim := s.t.e.o.Limits
	clock := s.t.e.o.Clock
	tick := clock.NewTicker(lim.SplitCheck)
	defer tick.Stop()
	start := clock.Now()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-tick.Chan():
		}
		share := s.t.split != nil && s.t.split.wantsWork()
		draining := false
		select {
		case <-s.t.e.drain:
			draining = !s.t.draining // a bundle started before the drain: checkpoint it
		default:
		}
		if draining {
			share = false
		} else if !share && clock.Since(start) < lim.BundleTime && s.w.OutputBytes(inst) < int64(lim.BundleOutputBytes) {
			continue
		}
		fraction := 0.5
		if !share {
			fraction = 0 // checkpoint: end the bundle now, keep the rest.
		}
		resp, err := s.w.Split(ctx, inst, s.t.stage.SourceID, fraction, int64(len(s.elems)))
		if err != nil {
			continue // the bundle may have just finished: nothing to split.
		}
		n := s.apply(resp, share)
		s.t.e.o.Logger.Debug("split bundle", "stage", s.t.name(), "instruction", inst, "fraction", fraction, "residuals", n)
		if !share && n > 0 {
			return // a checkpointed bundle is ending
		}
	}
}

// apply queues what a split took away from the running bundle: residual
// roots, and whole input elements past a channel split.
func (s *splitter) apply(resp *fnpb.ProcessBundleSplitResponse, share bool) int {
	s.mu.Lock()
	work := s.takeLocked(resp, s.t.stage.SourceID)
	if !share {
		s.local = append(s.local, work...)
	}
	s.mu.Unlock()
	if len(work) > 0 && share {
		chunks, holds := make([][]byte, len(work)), make([]int64, len(work))
		for i, w := range work {
			chunks[i], holds[i] = w.data, w.hold
		}
		s.t.split.putFrom(s.t.index, chunks, holds)
	}
	return len(work)
}

// takeLocked records a split response against the bundle's input and
// returns the work it split off.
func (s *splitter) takeLocked(resp *fnpb.ProcessBundleSplitResponse, source string) (work []splitWork) {
	for _, r := range resp.GetResidualRoots() {
		work = append(work, splitWork{data: r.GetApplication().GetElement(), elem: -1, hold: residualWatermark(r.GetApplication())})
	}
	var roots [][]byte
	for _, r := range resp.GetPrimaryRoots() {
		roots = append(roots, r.GetElement())
	}
	for _, cs := range resp.GetChannelSplits() {
		if cs.GetTransformId() != source {
			continue
		}
		first := max(cs.GetFirstResidualElement(), 0)
		for i := first; i < s.end; i++ {
			work = append(work, splitWork{data: s.elems[i], elem: i, hold: wire.MinTimestamp})
		}
		s.end = min(s.end, first)
		if len(roots) > 0 {
			if s.prim == nil {
				s.prim = map[int64][][]byte{}
			}
			// A sub-element split: the element split is the one
			// before the first residual element.
			s.prim[first-1] = roots
		}
	}
	return work
}
