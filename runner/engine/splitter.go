package engine

import (
	"context"
	"sync"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/wire"
)

// splitter watches one running bundle of a splittable stage and splits
// it whenever a sibling subtask is idle.
//
// A running splittable bundle is looked at every Limits.SplitCheck. It
// is checkpointed (split at fraction 0), so its outputs flow downstream
// and retries stay small, once it has run Limits.BundleTime, or earlier,
// once its output reaches Limits.BundleOutputBytes: a bundle's output is
// held in memory until it ends, and a fast source (a generator run in
// process) emits hundreds of megabytes in BundleTime.
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
			draining = !s.t.draining // a bundle started before the drain
		default:
		}
		fraction, ok := splitNow(lim, draining, share, clock.Since(start), func() int64 { return s.w.OutputBytes(inst) })
		if !ok {
			continue
		}
		share = fraction > 0
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

// splitNow decides, at one look at a running bundle of a splittable
// stage, whether to split it and at what fraction of its remainder: 0
// (a checkpoint: the bundle ends now and this subtask keeps the rest)
// when the job drains and the bundle started before, or it has run
// BundleTime, or its output (read only then) passed BundleOutputBytes;
// 0.5 when siblings want work (share), to hand them half.
func splitNow(lim Limits, draining, share bool, ran time.Duration, outBytes func() int64) (fraction float64, split bool) {
	switch {
	case draining:
		return 0, true
	case share:
		return 0.5, true
	case ran >= lim.BundleTime || outBytes() >= int64(lim.BundleOutputBytes):
		return 0, true
	}
	return 0, false
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
