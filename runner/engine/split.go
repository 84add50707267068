package engine

import (
	"context"
	"sync"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/sdkharness"
)

// splitPool lets the subtasks of a splittable stage share work: a busy
// subtask splits its running bundle when a sibling is idle and puts the
// residual here; idle subtasks take it. The stage is done when every
// subtask is idle and nothing is queued.
type splitPool struct {
	mu      sync.Mutex
	queue   [][]byte // chunks of whole elements
	running int      // subtasks not waiting in take
	idle    int
	done    bool
	wake    chan struct{}
}

func newSplitPool(n int) *splitPool {
	return &splitPool{running: n, wake: make(chan struct{})}
}

func (p *splitPool) broadcastLocked() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// put queues residual work; only a running subtask calls it.
func (p *splitPool) put(chunks ...[]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, chunks...)
	p.broadcastLocked()
}

// wantsWork reports whether an idle sibling waits for work.
func (p *splitPool) wantsWork() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.idle > 0 && len(p.queue) == 0
}

// take waits for queued work; false means the whole stage is done.
func (p *splitPool) take(ctx context.Context) ([]byte, bool, error) {
	p.mu.Lock()
	p.running--
	p.idle++
	for {
		if len(p.queue) > 0 {
			c := p.queue[0]
			p.queue = p.queue[1:]
			p.running++
			p.idle--
			p.mu.Unlock()
			return c, true, nil
		}
		if p.running == 0 || p.done {
			p.done = true
			p.broadcastLocked()
			p.mu.Unlock()
			return nil, false, nil
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		}
		p.mu.Lock()
	}
}

// splitter watches one running bundle of a splittable stage and splits
// it whenever a sibling subtask is idle.
type splitter struct {
	t      *sdkTask
	w      *sdkharness.Worker
	input  [][]byte
	instID chan string

	mu    sync.Mutex
	local [][]byte // residuals of checkpoint splits, run next by this subtask
}

const (
	splitCheck = 20 * time.Millisecond
	// bundleTime is how long a splittable bundle runs before it is
	// checkpointed (split at fraction 0), so its outputs flow downstream
	// and retries stay small.
	bundleTime = 500 * time.Millisecond
)

func (s *splitter) residuals() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.local
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
	tick := time.NewTicker(splitCheck)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
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
		} else if !share && time.Since(start) < bundleTime {
			continue
		}
		fraction := 0.5
		if !share {
			fraction = 0 // checkpoint: end the bundle now, keep the rest.
		}
		resp, err := s.w.Split(ctx, inst, s.t.stage.SourceID, fraction, int64(s.count()))
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

func (s *splitter) count() int {
	n := 0
	for _, c := range s.input {
		_ = s.t.inWV.ForEach(c, func(wire.Element) error { n++; return nil })
	}
	return n
}

// apply queues what a split took away from the running bundle: residual
// roots, and whole input elements past a channel split.
func (s *splitter) apply(resp *fnpb.ProcessBundleSplitResponse, share bool) int {
	var work [][]byte
	for _, r := range resp.GetResidualRoots() {
		work = append(work, r.GetApplication().GetElement())
	}
	for _, cs := range resp.GetChannelSplits() {
		if cs.GetTransformId() != s.t.stage.SourceID {
			continue
		}
		i := int64(0)
		first := cs.GetFirstResidualElement()
		for _, c := range s.input {
			_ = s.t.inWV.ForEach(c, func(e wire.Element) error {
				if i >= first {
					work = append(work, e.Raw)
				}
				i++
				return nil
			})
		}
	}
	if len(work) == 0 {
		return 0
	}
	if share {
		s.t.split.put(work...)
	} else {
		s.mu.Lock()
		s.local = append(s.local, work...)
		s.mu.Unlock()
	}
	return len(work)
}
