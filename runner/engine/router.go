package engine

import (
	"context"
	"fmt"

	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// target is one consumer of an output: a port on every subtask of a stage.
type target struct {
	port    int
	part    plan.Partition
	inboxes []inbox
}

// output routes one PCollection a subtask produces.
type output struct {
	pcoll   string
	wv      wire.WVCoder
	targets []target
	rr      int
}

// router sends a subtask's outputs to the subtasks that consume them.
type router struct {
	sender  string
	subtask int
	maxP    int
	// msgBytes bounds the data of one message (0: DefaultLimits').
	msgBytes int
	outs     map[string]*output
	order    []*output
	dests    []controlDest // where control events go (controlDests)
	// onWatermark is told every output watermark (and end of input).
	onWatermark func(int64)
	quiet       *quiescence // counts what is sent, in a TestStream job
	// gates are the consumers' alignment gates (checkpoints on; nil: off);
	// barred is the last barrier sent to each consumer inbox, after which
	// it is sent nothing until its gate passes that barrier.
	gates  map[inbox]*gate
	barred map[inbox]int64
}

func (r *router) emit(ctx context.Context, pcoll string, data []byte) error {
	o := r.outs[pcoll]
	if o == nil || len(data) == 0 {
		return nil
	}
	for _, t := range o.targets {
		if err := r.emitTo(ctx, o, t, data); err != nil {
			return err
		}
	}
	return nil
}

// maxMsgBytes bounds the data of one inbox message (Limits.MessageBytes):
// a bundle's output is sent on in pieces of about this size, so a full
// inbox holds a bounded amount however large the bundle that filled it.
func (r *router) maxMsgBytes() int {
	if r.msgBytes > 0 {
		return r.msgBytes
	}
	return DefaultLimits.MessageBytes
}

func (r *router) emitTo(ctx context.Context, o *output, t target, data []byte) error {
	n := len(t.inboxes)
	send := func(i int, p []byte) error {
		return r.send(ctx, t.inboxes[i], msg{kind: msgData, port: t.port, sender: r.sender, data: p})
	}
	switch {
	case t.part == plan.Broadcast:
		return r.inPieces(o, data, func(p []byte) error {
			for i := range t.inboxes {
				if err := send(i, p); err != nil {
					return err
				}
			}
			return nil
		})
	case n == 1 || t.part == plan.Forward:
		return r.inPieces(o, data, func(p []byte) error { return send(r.subtask%n, p) })
	}
	parts := make([][]byte, n)
	err := o.wv.ForEach(data, func(e wire.Element) error {
		var i int
		if t.part == plan.Hash {
			key, _, err := o.wv.Elem.SplitKV(e.Value)
			if err != nil {
				return fmt.Errorf("reading key of an element of %s: %w", o.pcoll, err)
			}
			i = state.SubtaskForKeyGroup(state.KeyGroup(key, r.maxP), n, r.maxP)
		} else {
			i = o.rr % n
			o.rr++
		}
		if len(parts[i])+len(e.Raw) > r.maxMsgBytes() && len(parts[i]) > 0 {
			if err := send(i, parts[i]); err != nil {
				return err
			}
			parts[i] = nil
		}
		parts[i] = append(parts[i], e.Raw...)
		return nil
	})
	if err != nil {
		return err
	}
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		if err := send(i, p); err != nil {
			return err
		}
	}
	return nil
}

// inPieces calls fn with data cut at element boundaries into pieces of
// about maxMsgBytes() (data itself when it is no bigger).
func (r *router) inPieces(o *output, data []byte, fn func([]byte) error) error {
	for len(data) > 0 {
		head, rest, err := o.wv.Cut(data, r.maxMsgBytes())
		if err != nil {
			return fmt.Errorf("cutting output of %s: %w", o.pcoll, err)
		}
		if err := fn(head); err != nil {
			return err
		}
		data = rest
	}
	return nil
}

// control sends a control event to every subtask of every consumer, and
// records the subtask's output watermark.
func (r *router) control(ctx context.Context, kind msgKind, wm int64) error {
	if r.onWatermark != nil {
		r.onWatermark(wm)
	}
	return r.broadcast(ctx, msg{kind: kind, wm: wm})
}

// barrier forwards checkpoint barrier chk to every subtask of every
// consumer, in band after everything sent before it.
func (r *router) barrier(ctx context.Context, chk int64) error {
	return r.broadcast(ctx, msg{kind: msgBarrier, chk: chk})
}

// broadcast sends m, from this sender, once to every port of every
// subtask that consumes an output, however many of its outputs reach
// that port (Engine.ports counts the sender once).
func (r *router) broadcast(ctx context.Context, m msg) error {
	m.sender = r.sender
	if r.dests == nil {
		r.dests = controlDests(r.order)
	}
	for _, d := range r.dests {
		m.port = d.port
		if err := r.send(ctx, d.in, m); err != nil {
			return err
		}
	}
	return nil
}

// controlDest is one port of one consumer subtask.
type controlDest struct {
	in   inbox
	port int
}

// controlDests lists each port of each consumer subtask of outs once.
func controlDests(outs []*output) []controlDest {
	seen := map[controlDest]bool{}
	dests := []controlDest{}
	for _, o := range outs {
		for _, t := range o.targets {
			for _, in := range t.inboxes {
				if d := (controlDest{in, t.port}); !seen[d] {
					seen[d] = true
					dests = append(dests, d)
				}
			}
		}
	}
	return dests
}

// send puts m in a consumer's inbox, counting it in a TestStream job.
// After a barrier it sends nothing but barriers (one consumer may take
// this sender's barrier on several ports) until the consumer has aligned
// it (gate).
func (r *router) send(ctx context.Context, in inbox, m msg) error {
	if r.gates != nil && m.kind != msgBarrier {
		if err := r.waitAligned(ctx, in); err != nil {
			return err
		}
	}
	r.quiet.sent(m)
	if err := in.send(ctx, m); err != nil {
		return err
	}
	if m.kind == msgBarrier && r.gates != nil {
		if r.barred == nil {
			r.barred = map[inbox]int64{}
		}
		r.barred[in] = max(r.barred[in], m.chk)
	}
	return nil
}

// waitAligned waits until the last barrier sent to in has been aligned
// there: until then the consumer holds this sender's input back.
func (r *router) waitAligned(ctx context.Context, in inbox) error {
	chk, ok := r.barred[in]
	if !ok {
		return nil
	}
	if g := r.gates[in]; g != nil {
		if err := g.wait(ctx, chk); err != nil {
			return err
		}
	}
	delete(r.barred, in)
	return nil
}
