package trigger

import (
	"fmt"
	"math"
)

// Input is what happened to one key and window since the last OnEvent call
// for them, and what time it is.
type Input struct {
	// Elements is the number of elements added to the window's pane since
	// the last call. Call once per element to fire at element granularity.
	Elements int
	// Watermark is the current input watermark, in milliseconds.
	Watermark int64
	// ProcessingTime is the current processing time, in milliseconds. New
	// elements are taken to have arrived at it: AfterProcessingTime counts
	// its delay from the processing time at which it saw its first element.
	ProcessingTime int64
	// WindowEnd is the window's max timestamp (its last millisecond). The
	// end of the window is reached once Watermark > WindowEnd.
	WindowEnd int64
}

// OnEvent folds in into s and evaluates the trigger once. It reports
// whether a pane fires now, whether the trigger has finished (the window is
// closed: no pane will ever fire again), and the processing time at or
// after which OnEvent should be called again even if nothing else happens
// (0 if there is none). At most one pane fires per call.
//
// s must not be nil. It is the zero State or one that OnEvent (or Decode, checked with Check)
// produced for this trigger; a State of another trigger's shape panics. On a
// finished State, OnEvent does nothing and reports finished.
func (m *Machine) OnEvent(s *State, in Input) (fire, finished bool, wakeAt int64) {
	switch len(s.cells) {
	case len(m.nodes):
	case 0:
		s.cells = make([]cell, len(m.nodes))
	default:
		panic(fmt.Sprintf("trigger: a state of %d cells used with %s, which has %d parts", len(s.cells), m, len(m.nodes)))
	}
	if s.Finished() {
		return false, true, 0
	}
	e := &eval{n: m.nodes, c: s.cells, in: in, eow: in.Watermark > in.WindowEnd}
	if in.Elements > 0 {
		e.onElements(0, int64(in.Elements))
	}
	if e.shouldFire(0) {
		// A processing-time firing is one the trigger would not make if
		// no processing-time condition held.
		e.noTime = true
		byTime := !e.shouldFire(0)
		e.noTime = false
		e.onFire(0)
		fire = true
		if byTime && s.Finished() {
			s.cells[0].flags |= fOpen
		}
	}
	if s.Finished() {
		return fire, true, 0
	}
	return fire, false, e.wake()
}

// eval runs one OnEvent over a trigger's nodes and their cells. Its methods
// follow Beam's TriggerStateMachine: onElement, shouldFire, onFire, clear
// (forget the pane's state but not what has finished) and resetTree (start
// over, finished bits included).
type eval struct {
	n   []node
	c   []cell
	in  Input
	eow bool // the watermark is past the end of the window
	// noTime makes every AfterProcessingTime node unready, to tell
	// whether a firing is a processing-time one.
	noTime bool
}

func (e *eval) finished(i int) bool { return e.c[i].flags&fFinished != 0 }
func (e *eval) finish(i int)        { e.c[i].flags |= fFinished }

// resetTree returns node i and its subtree to their initial state.
func (e *eval) resetTree(i int) {
	clear(e.c[i:e.n[i].end])
}

// clearTree forgets the pane-tracking state of node i and its subtree
// (counts, processing-time targets), keeping which nodes have finished and
// which AfterEndOfWindow nodes are in their late phase.
func (e *eval) clearTree(i int) {
	for j := i; j < e.n[i].end; j++ {
		e.c[j].v = 0
		e.c[j].flags &^= fTimeSet
	}
}

// current is AfterEach node i's first unfinished subtrigger, or -1.
func (e *eval) current(i int) int {
	for _, ch := range e.n[i].children {
		if !e.finished(ch) {
			return ch
		}
	}
	return -1
}

// onElements tells node i that k elements arrived.
func (e *eval) onElements(i int, k int64) {
	n := &e.n[i]
	switch n.kind {
	case kAlways, kElementCount:
		e.c[i].v = addSat(e.c[i].v, k)
	case kProcessingTime:
		// Only the first element of a pane sets the target: the delay runs
		// from the first element (AfterProcessingTime.pastFirstElementInPane).
		if e.c[i].flags&fTimeSet == 0 {
			t := e.in.ProcessingTime
			if n.sync {
				t = addSat(t, 1)
			}
			for _, tt := range n.shift {
				t = tt.apply(t)
			}
			e.c[i].v = t
			e.c[i].flags |= fTimeSet
		}
	case kEndOfWindow:
		// Only the phase that is running sees elements (Beam's non-merging
		// AfterWatermarkEarlyAndLate runs its first unfinished subtrigger).
		if e.c[i].flags&fLate == 0 {
			if n.early >= 0 {
				e.onElements(n.early, k)
			}
		} else if n.late >= 0 {
			e.onElements(n.late, k)
		}
	case kAll, kAny, kOrFinally:
		for _, ch := range n.children {
			if !e.finished(ch) {
				e.onElements(ch, k)
			}
		}
	case kEach:
		if ch := e.current(i); ch >= 0 {
			e.onElements(ch, k)
		}
	case kRepeat:
		e.onElements(n.children[0], k)
	}
}

// shouldFire reports whether unfinished node i is ready to fire.
func (e *eval) shouldFire(i int) bool {
	n := &e.n[i]
	switch n.kind {
	case kDefault:
		return e.eow
	case kAlways:
		// "Always ready. This can also be expressed as Repeat{ElementCount(1)}"
		// (beam_runner_api.proto): ready once an element is in the pane.
		return e.c[i].v >= 1
	case kNever:
		return false
	case kElementCount:
		return e.c[i].v >= n.count
	case kProcessingTime:
		// Ready once the clock reaches the target, as in prism and as
		// Beam's Go tests expect (TestTriggerAfterProcessingTime fires when
		// processing time advances by exactly the delay, its NotTriggered
		// twin does not at a millisecond less). Java's state machine waits
		// until the clock is after it (isAfter): one millisecond later.
		return !e.noTime && e.c[i].flags&fTimeSet != 0 && e.in.ProcessingTime >= e.c[i].v
	case kEndOfWindow:
		if e.c[i].flags&fLate == 0 {
			return e.eow || (n.early >= 0 && !e.finished(n.early) && e.shouldFire(n.early))
		}
		return n.late >= 0 && !e.finished(n.late) && e.shouldFire(n.late)
	case kAll:
		// Finished subtriggers count as ready.
		for _, ch := range n.children {
			if !e.finished(ch) && !e.shouldFire(ch) {
				return false
			}
		}
		return true
	case kAny:
		for _, ch := range n.children {
			if e.finished(ch) || e.shouldFire(ch) {
				return true
			}
		}
		return false
	case kEach:
		ch := e.current(i)
		return ch >= 0 && e.shouldFire(ch)
	case kRepeat:
		return e.shouldFire(n.children[0])
	case kOrFinally:
		return e.shouldFire(n.children[0]) || e.shouldFire(n.children[1])
	}
	return false
}

// onFire records that node i fired; shouldFire(i) was true.
func (e *eval) onFire(i int) {
	n := &e.n[i]
	switch n.kind {
	case kDefault, kNever:
		// Default never finishes: it fires again for every late element.
	case kAlways:
		e.c[i].v = 0
	case kElementCount:
		e.c[i].v = 0
		e.finish(i)
	case kProcessingTime:
		e.c[i].v = 0
		e.c[i].flags &^= fTimeSet
		e.finish(i)
	case kEndOfWindow:
		switch {
		case e.c[i].flags&fLate != 0:
			// A late firing, implicitly repeated.
			e.fireRepeated(n.late)
		case !e.eow:
			// An early firing, implicitly repeated.
			e.fireRepeated(n.early)
		default:
			// The on-time firing. If the early trigger happens to be ready
			// too it fires with it; then the late trigger takes over, from a
			// clean state. Without one, the trigger is done.
			if n.early >= 0 {
				if !e.finished(n.early) && e.shouldFire(n.early) {
					e.onFire(n.early)
				}
				e.resetTree(n.early)
			}
			e.c[i].flags |= fLate
			if n.late < 0 {
				e.finish(i)
			} else {
				e.resetTree(n.late)
			}
		}
	case kAll:
		for _, ch := range n.children {
			if !e.finished(ch) {
				e.onFire(ch)
			}
		}
		e.finish(i)
	case kAny:
		// The subtriggers that are ready fire; the others lose the pane they
		// were tracking.
		for _, ch := range n.children {
			if e.finished(ch) {
				continue
			}
			if e.shouldFire(ch) {
				e.onFire(ch)
			} else {
				e.clearTree(ch)
			}
		}
		e.finish(i)
	case kEach:
		e.onFire(e.current(i))
		if e.current(i) < 0 {
			e.finish(i)
		}
	case kRepeat:
		e.fireRepeated(n.children[0])
	case kOrFinally:
		main, fin := n.children[0], n.children[1]
		if e.shouldFire(fin) {
			// The finally trigger fired: this pane is the last one.
			e.onFire(fin)
			e.clearTree(main)
			e.finish(i)
			return
		}
		e.onFire(main)
		if e.finished(main) {
			e.finish(i)
		}
	}
}

// fireRepeated fires node i as the body of a repeat: once it finishes, it
// starts over.
func (e *eval) fireRepeated(i int) {
	e.onFire(i)
	if e.finished(i) {
		e.resetTree(i)
	}
}

// wake is the earliest processing time at which an AfterProcessingTime node
// that is waiting becomes ready (its target), or 0.
func (e *eval) wake() int64 {
	var at int64
	for i := range e.n {
		c := e.c[i]
		if e.n[i].kind != kProcessingTime || c.flags&fTimeSet == 0 || c.flags&fFinished != 0 {
			continue
		}
		if c.v <= e.in.ProcessingTime || c.v == math.MaxInt64 {
			continue // already reached (and held back by its parent), or never
		}
		if at == 0 || c.v < at {
			at = c.v
		}
	}
	return at
}
