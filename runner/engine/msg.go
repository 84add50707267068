package engine

import (
	"context"

	"github.com/weir-runner/weir/runner/wire"
)

type msgKind uint8

const (
	msgData msgKind = iota
	msgWatermark
	msgEOI
	// msgBarrier is checkpoint barrier chk: from a sender in band, or from
	// the coordinator (sender "") to a subtask whose inputs have all ended.
	msgBarrier
)

// msg is one inbox entry: a batch of encoded windowed values for a port,
// or a control event from one sender.
type msg struct {
	kind   msgKind
	port   int    // 0: main input; i+1: side input i
	sender string // "stage/subtask", for per-sender watermarks
	data   []byte // concatenated encoded elements
	wm     int64
	chk    int64 // checkpoint ID of a barrier
}

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

// portState tracks the senders of one input port: how many have ended,
// and the watermark each has sent.
type portState struct {
	senders int
	eoi     int
	wms     map[string]int64
}

func (p *portState) done() bool { return p.eoi >= p.senders }

// observe records a control event; it reports whether the port's
// watermark may have changed.
func (p *portState) observe(m msg) bool {
	if p.wms == nil {
		p.wms = map[string]int64{}
	}
	switch m.kind {
	case msgEOI:
		p.eoi++
		p.wms[m.sender] = wire.MaxTimestamp
		return true
	case msgWatermark:
		if old, ok := p.wms[m.sender]; !ok || m.wm > old {
			p.wms[m.sender] = m.wm
			return true
		}
	}
	return false
}

// watermark is the minimum over the port's senders: nothing is known until
// every sender has spoken.
func (p *portState) watermark() int64 {
	if p.done() {
		return wire.MaxTimestamp
	}
	if len(p.wms) < p.senders {
		return wire.MinTimestamp
	}
	wm := wire.MaxTimestamp
	for _, v := range p.wms {
		wm = min(wm, v)
	}
	return wm
}
