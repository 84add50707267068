package coord

import "time"

// MsgKind is what an Aligner needs to know of a message's kind.
type MsgKind uint8

const (
	Data MsgKind = iota
	Watermark
	EOI     // the sender's input has ended
	Barrier // checkpoint barrier Head.Chk
)

// Head is what an Aligner reads of a message: its kind, the input port it
// came in on, its sender ("" for a barrier from the coordinator) and, for
// a barrier, its checkpoint.
type Head struct {
	Kind   MsgKind
	Port   int
	Sender string
	Chk    int64
}

// Aligner decides what a subtask's task loop sees of its inbox while
// checkpointing is on. It passes messages through in order, except that
// once a sender has delivered barrier N on a port, what that sender sends
// after it is held until every sender of every port has delivered N or
// ended (alignment). Then it passes one barrier N on, and what it held: the
// task snapshots exactly the input before the barrier. (The engine's
// routers do not send to an inbox past a barrier until its aligner has
// passed that barrier on, so little is ever held.)
//
// When all of the subtask's inputs have ended, barriers reach it from the
// coordinator (sender ""), since no sender is left to bring them.
//
// M is the shell's message; head reads it, barrier makes one.
type Aligner[M any] struct {
	head    func(M) Head
	barrier func(chk int64) M
	senders []int // senders per port

	eoi     []int // ends of input seen per port
	cur     int64 // barrier being aligned (0: none)
	seen    []int // barriers cur seen per port
	blocked map[portSender]bool
	held    []M
	last    int64 // last barrier passed on
	start   time.Time
}

type portSender struct {
	port   int
	sender string
}

// Ready is what one step lets through, and what the coordinator must hear
// of it.
type Ready[M any] struct {
	Out []M // to the task, in order
	// Ended: the subtask's inputs have all ended with this step.
	Ended bool
	// Aligned are the alignments this step completed.
	Aligned []Alignment
	// Abandoned are checkpoints whose alignment this step gave up for a
	// newer one (they were aborted): senders that wait for them to pass
	// may go on.
	Abandoned []int64
}

// Alignment is how long a subtask waited to align barrier Chk.
type Alignment struct {
	Chk  int64
	Took time.Duration
}

// NewAligner makes the aligner of a subtask with senders[i] senders on
// port i.
func NewAligner[M any](senders []int, head func(M) Head, barrier func(int64) M) *Aligner[M] {
	return &Aligner[M]{head: head, barrier: barrier, senders: senders, eoi: make([]int, len(senders)), seen: make([]int, len(senders)), blocked: map[portSender]bool{}}
}

// Ended reports whether every input has ended (a subtask without inputs
// has ended from the start).
func (a *Aligner[M]) Ended() bool {
	for i, n := range a.senders {
		if a.eoi[i] < n {
			return false
		}
	}
	return true
}

// Held is how many messages wait for an alignment to complete.
func (a *Aligner[M]) Held() int { return len(a.held) }

// Passed is the last barrier passed on or given up.
func (a *Aligner[M]) Passed() int64 { return a.last }

// Step takes message m, arrived at now.
func (a *Aligner[M]) Step(m M, now time.Time) Ready[M] {
	var r Ready[M]
	a.admit(&r, m, now)
	return r
}

func (a *Aligner[M]) admit(r *Ready[M], m M, now time.Time) {
	h := a.head(m)
	k := portSender{h.Port, h.Sender}
	switch {
	case h.Kind == Barrier && h.Sender == "":
		// From the coordinator: only a subtask without live inputs acts on it.
		if h.Chk > a.last && a.cur == 0 && a.Ended() {
			a.complete(r, h.Chk, now)
		}
	case a.cur != 0 && a.blocked[k]:
		if h.Kind == Barrier && h.Chk == a.cur {
			a.seen[h.Port]++ // the sender feeds this port more than once
			a.maybeComplete(r, now)
			return
		}
		a.held = append(a.held, m)
	case h.Kind == Barrier:
		if h.Chk <= a.last || (a.cur != 0 && h.Chk < a.cur) {
			return // an aborted checkpoint's late barrier
		}
		if a.cur != 0 && h.Chk > a.cur {
			// Barriers travel in order, so a newer one means its sender
			// skipped cur (cur was aborted before the sender was asked for
			// it). cur is given up: the senders blocked on it go on, for
			// what they send before their next barrier belongs before it.
			a.abandon(r, now)
			a.admit(r, m, now)
			return
		}
		if a.cur == 0 {
			a.cur, a.start = h.Chk, now
		}
		a.blocked[k] = true
		a.seen[h.Port]++
		a.maybeComplete(r, now)
	case h.Kind == EOI:
		a.eoi[h.Port]++
		r.Out = append(r.Out, m)
		if a.Ended() {
			r.Ended = true
		}
		a.maybeComplete(r, now)
	default:
		r.Out = append(r.Out, m)
	}
}

func (a *Aligner[M]) maybeComplete(r *Ready[M], now time.Time) {
	if a.cur == 0 {
		return
	}
	for i, n := range a.senders {
		if a.seen[i]+a.eoi[i] < n {
			return
		}
	}
	a.complete(r, a.cur, now)
}

// abandon gives up aligning cur and re-admits what was held back.
func (a *Aligner[M]) abandon(r *Ready[M], now time.Time) {
	r.Abandoned = append(r.Abandoned, a.cur)
	a.last, a.cur = a.cur, 0
	a.release(r, now)
}

// complete passes barrier chk on, then re-admits what was held back.
func (a *Aligner[M]) complete(r *Ready[M], chk int64, now time.Time) {
	if a.cur != 0 {
		r.Aligned = append(r.Aligned, Alignment{Chk: chk, Took: now.Sub(a.start)})
	}
	r.Out = append(r.Out, a.barrier(chk))
	a.last, a.cur = chk, 0
	a.release(r, now)
}

// release unblocks every sender and re-admits what was held back.
func (a *Aligner[M]) release(r *Ready[M], now time.Time) {
	clear(a.blocked)
	clear(a.seen)
	held := a.held
	a.held = nil
	for _, m := range held {
		a.admit(r, m, now)
	}
}
