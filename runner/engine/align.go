package engine

import (
	"context"
	"sync"
	"time"

	"github.com/weir-runner/weir/runner/engine/coord"
)

// aligner is the goroutine shell of a subtask's barrier alignment
// (coord.Aligner decides): it moves messages from the subtask's inbox,
// written by senders and the coordinator, to the task loop's, tells the
// coordinator when the subtask's inputs have ended and how long
// alignments took, and opens the inbox's gate for each barrier it passes
// on: a router that has sent barrier N to an inbox sends it nothing else
// until then, so alignment blocks the inputs whose barrier has arrived and
// backpressure holds through it.
type aligner struct {
	raw     inbox // the subtask's inbox, written by senders and the coordinator
	out     inbox // read by the task loop
	node    *coord.Aligner[msg]
	onEnded func()
	onAlign func(chk int64, took time.Duration)
	gate    *gate // opened for each barrier passed on; nil: none
}

func newAligner(raw inbox, ports []portState, onEnded func(), onAlign func(int64, time.Duration)) *aligner {
	senders := make([]int, len(ports))
	for i, p := range ports {
		senders[i] = p.senders
	}
	node := coord.NewAligner(senders, msgHead, func(chk int64) msg { return msg{kind: msgBarrier, chk: chk} })
	return &aligner{raw: raw, out: make(inbox, cap(raw)), node: node, onEnded: onEnded, onAlign: onAlign}
}

// msgHead is what alignment reads of a message.
func msgHead(m msg) coord.Head {
	h := coord.Head{Port: m.port, Sender: m.sender, Chk: m.chk}
	switch m.kind {
	case msgWatermark:
		h.Kind = coord.Watermark
	case msgEOI:
		h.Kind = coord.EOI
	case msgBarrier:
		h.Kind = coord.Barrier
	}
	return h
}

// run moves messages until ctx ends (the subtask's context: it ends when
// the task does).
func (a *aligner) run(ctx context.Context, clock Clock) {
	if a.node.Ended() {
		a.onEnded()
	}
	for {
		select {
		case m := <-a.raw:
			r := a.node.Step(m, clock.Now())
			for _, al := range r.Aligned {
				if a.onAlign != nil {
					a.onAlign(al.Chk, al.Took)
				}
			}
			if r.Ended {
				a.onEnded()
			}
			for _, chk := range r.Abandoned {
				if a.gate != nil {
					a.gate.pass(chk)
				}
			}
			for _, o := range r.Out {
				if a.out.send(ctx, o) != nil {
					return
				}
				if o.kind == msgBarrier && a.gate != nil {
					a.gate.pass(o.chk)
				}
			}
		case <-ctx.Done():
			return
		}
	}
}

// gate is how senders to one inbox learn that its aligner has passed a
// barrier on: a router that sent barrier N there waits for it before it
// sends more.
type gate struct {
	mu     sync.Mutex
	passed int64
	ch     chan struct{} // closed when passed moves
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

// pass records that barrier chk has been passed on.
func (g *gate) pass(chk int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if chk > g.passed {
		g.passed = chk
		close(g.ch)
		g.ch = make(chan struct{})
	}
}

// wait returns once barrier chk (or a later one) has been passed on.
func (g *gate) wait(ctx context.Context, chk int64) error {
	for {
		g.mu.Lock()
		passed, ch := g.passed, g.ch
		g.mu.Unlock()
		if passed >= chk {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}
