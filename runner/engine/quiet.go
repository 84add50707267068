package engine

import (
	"context"
	"sync"
)

// quiescence counts the messages that subtasks have been sent and not yet
// handled, in a job that replays a TestStream. Like prism, which runs a
// TestStream's next event only once the pipeline is idle, the replay waits
// after each event until the count is zero: every element sent before a
// watermark advance has then gone as far down the pipeline as it goes
// (its outputs are sent before the message that caused them counts as
// handled), and every timer the advance made due has fired. Without it,
// the order of an element and a watermark advance that reach a stage
// along different paths (two subtasks of a keyed exchange) would depend on
// timing. Checkpoint barriers are not counted: TestStream jobs take no
// checkpoints.
type quiescence struct {
	mu   sync.Mutex
	n    int64
	idle chan struct{} // closed while n is zero
}

func newQuiescence() *quiescence {
	q := &quiescence{idle: make(chan struct{})}
	close(q.idle)
	return q
}

// counts reports whether m is counted.
func (q *quiescence) counts(m msg) bool { return q != nil && m.kind != msgBarrier }

// sent counts a message about to be sent.
func (q *quiescence) sent(m msg) {
	if !q.counts(m) {
		return
	}
	q.mu.Lock()
	if q.n == 0 {
		q.idle = make(chan struct{})
	}
	q.n++
	q.mu.Unlock()
}

// handled uncounts n messages.
func (q *quiescence) handled(n int64) {
	if q == nil || n == 0 {
		return
	}
	q.mu.Lock()
	q.n -= n
	if q.n == 0 {
		close(q.idle)
	}
	q.mu.Unlock()
}

// wait returns once every message sent has been handled.
func (q *quiescence) wait(ctx context.Context) error {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	idle := q.idle
	q.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// took notes that the subtask took m from its inbox; release, called when
// it is ready for the next message (or ends), says it handled them.
func (s *subtask) took(m msg) {
	if s.e.quiet.counts(m) {
		s.held++
	}
}

func (s *subtask) release() {
	s.e.quiet.handled(s.held)
	s.held = 0
}
