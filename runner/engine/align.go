package engine

import (
	"context"
	"sync"
	"time"
)

// aligner stands between a subtask's inbox and its task loop while
// checkpointing is on. It passes messages through in order, except that
// once a sender has delivered barrier N on a port, what that sender sends
// after it waits until every sender of every port has delivered N or
// ended (alignment). Then it passes one barrier N on: the task snapshots
// exactly the input before the barrier.
//
// The wait is the sender's: a router that has sent barrier N to an inbox
// sends it nothing else until the inbox's gate says N has passed, so
// alignment blocks the inputs whose barrier has arrived, and backpressure
// holds through it, instead of their data piling up here. What reaches the
// aligner from a blocked sender all the same (a sender not gated) is held
// and passed on after the barrier.
//
// It also tells the coordinator when all of the subtask's inputs have
// ended; from then on barriers reach the subtask from the coordinator
// (sender ""), since no sender is left to bring them.
type aligner struct {
	raw     inbox // the subtask's inbox, written by senders and the coordinator
	out     inbox // read by the task loop
	senders []int // senders per port
	onEnded func()
	onAlign func(chk int64, took time.Duration)
	gate    *gate // opened for each barrier passed on; nil: none

	eoi     []int // ends of input seen per port
	cur     int64 // barrier being aligned (0: none)
	seen    []int // barriers cur seen per port
	blocked map[portSender]bool
	held    []msg
	last    int64 // last barrier passed on
	start   time.Time
}

type portSender struct {
	port   int
	sender string
}

func newAligner(raw inbox, ports []portState, onEnded func(), onAlign func(int64, time.Duration)) *aligner {
	a := &aligner{raw: raw, out: make(inbox, cap(raw)), onEnded: onEnded, onAlign: onAlign, blocked: map[portSender]bool{}}
	for _, p := range ports {
		a.senders = append(a.senders, p.senders)
	}
	a.eoi = make([]int, len(ports))
	a.seen = make([]int, len(ports))
	return a
}

// run is the aligner's goroutine: it moves messages until ctx ends (the
// subtask's context: it ends when the task does). Its decisions are step's.
func (a *aligner) run(ctx context.Context, clock Clock) {
	if a.ended() {
		a.onEnded()
	}
	for {
		select {
		case m := <-a.raw:
			for _, o := range a.step(m, clock.Now()) {
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

func (a *aligner) ended() bool {
	for i, n := range a.senders {
		if a.eoi[i] < n {
			return false
		}
	}
	return true
}

// step takes message m, arrived at now, and returns what the task is to
// see next, in order (nothing while m is held back).
func (a *aligner) step(m msg, now time.Time) []msg {
	return a.admit(nil, m, now)
}

// admit appends to out what m lets through.
func (a *aligner) admit(out []msg, m msg, now time.Time) []msg {
	k := portSender{m.port, m.sender}
	switch {
	case m.kind == msgBarrier && m.sender == "":
		// From the coordinator: only a subtask without live inputs acts on it.
		if m.chk > a.last && a.cur == 0 && a.ended() {
			return a.complete(out, m.chk, now)
		}
		return out
	case a.cur != 0 && a.blocked[k]:
		if m.kind == msgBarrier && m.chk == a.cur {
			a.seen[m.port]++ // the sender feeds this port more than once
			return a.maybeComplete(out, now)
		}
		a.held = append(a.held, m)
		return out
	case m.kind == msgBarrier:
		if m.chk <= a.last || (a.cur != 0 && m.chk < a.cur) {
			return out // an aborted checkpoint's late barrier
		}
		if a.cur == 0 {
			a.cur, a.start = m.chk, now
		} else if m.chk > a.cur {
			// Barriers travel in order, so a newer one means the sender
			// skipped cur; align on the newer one from here.
			a.cur = m.chk
		}
		a.blocked[k] = true
		a.seen[m.port]++
		return a.maybeComplete(out, now)
	case m.kind == msgEOI:
		a.eoi[m.port]++
		out = append(out, m)
		if a.ended() {
			a.onEnded()
		}
		return a.maybeComplete(out, now)
	default:
		return append(out, m)
	}
}

func (a *aligner) maybeComplete(out []msg, now time.Time) []msg {
	if a.cur == 0 {
		return out
	}
	for i, n := range a.senders {
		if a.seen[i]+a.eoi[i] < n {
			return out
		}
	}
	return a.complete(out, a.cur, now)
}

// complete passes barrier chk on, then re-admits what was held back.
func (a *aligner) complete(out []msg, chk int64, now time.Time) []msg {
	if a.cur != 0 && a.onAlign != nil {
		a.onAlign(chk, now.Sub(a.start))
	}
	out = append(out, msg{kind: msgBarrier, chk: chk})
	a.last, a.cur = chk, 0
	clear(a.blocked)
	clear(a.seen)
	held := a.held
	a.held = nil
	for _, m := range held {
		out = a.admit(out, m, now)
	}
	return out
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
