package engine

import "context"

type msgKind uint8

const (
	msgData msgKind = iota
	msgWatermark
	msgEOI
)

// msg is one inbox entry: a batch of encoded windowed values for a port,
// or a control event from one sender.
type msg struct {
	kind   msgKind
	port   int    // 0: main input; i+1: side input i
	sender string // "stage/subtask", for per-sender watermarks
	data   []byte // concatenated encoded elements
	wm     int64
}

const inboxSize = 16

// inbox is a subtask's bounded queue.
type inbox chan msg

func (in inbox) send(ctx context.Context, m msg) error {
	select {
	case in <- m:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// portState tracks the senders of one input port.
type portState struct {
	senders int
	eoi     int
}

func (p *portState) done() bool { return p.eoi >= p.senders }
