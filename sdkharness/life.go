package sdkharness

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// life is what the two kinds of worker share: a name, the IDs of the
// instructions sent to it, and its end (gone is closed once, with the
// reason in goneErr).
type life struct {
	id     string
	nextID atomic.Int64

	gone     chan struct{}
	goneOnce sync.Once
	goneErr  error
}

func newLife(id string) life { return life{id: id, gone: make(chan struct{})} }

// ID names the worker.
func (l *life) ID() string { return l.id }

// Err says why the worker is gone (nil while it lives).
func (l *life) Err() error {
	select {
	case <-l.gone:
		return l.goneErr
	default:
		return nil
	}
}

// end ends the worker with err, reporting whether this call did (only the
// first does).
func (l *life) end(err error) (ended bool) {
	l.goneOnce.Do(func() {
		l.goneErr = err
		close(l.gone)
		ended = true
	})
	return ended
}

func (l *life) newInstructionID() string {
	return l.id + "-" + strconv.FormatInt(l.nextID.Add(1), 10)
}
