package sdkharness

import (
	"context"
	"fmt"
	"sync"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

type bundle struct {
	id string
	// state serves the bundle's state requests; it is ended when
	// ProcessBundle returns, so that no request reaches the bundle's state
	// after its caller has committed or discarded it.
	state *StateServer

	mu         sync.Mutex
	outputs    map[string][]byte
	timers     map[harness.TimerKey][]byte
	waitData   map[string]bool
	waitTimer  map[harness.TimerKey]bool
	endedTimer map[harness.TimerKey]bool
	resp       *fnpb.ProcessBundleResponse
	err        error
	done       chan struct{}
	closed     bool
}

func (b *bundle) finishLocked() {
	if b.closed {
		return
	}
	if b.err != nil || (b.resp != nil && len(b.waitData) == 0 && len(b.waitTimer) == 0) {
		b.closed = true
		close(b.done)
	}
}

func (b *bundle) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
	b.finishLocked()
}

// ProcessBundle runs one bundle on the harness and waits for all of its
// outputs. An error means nothing of the bundle may be used.
func (w *Worker) ProcessBundle(ctx context.Context, spec harness.BundleSpec) (*harness.Result, error) {
	w.finalizing.RLock()
	defer w.finalizing.RUnlock()
	instID := w.newInstructionID()
	b := &bundle{
		id:         instID,
		state:      NewStateServer(instID, spec.State, spec.PageBytes),
		outputs:    map[string][]byte{},
		timers:     map[harness.TimerKey][]byte{},
		waitData:   map[string]bool{},
		waitTimer:  map[harness.TimerKey]bool{},
		endedTimer: map[harness.TimerKey]bool{},
		done:       make(chan struct{}),
	}
	for _, o := range spec.Outputs {
		b.waitData[o] = true
	}
	spec.EndTimers = timerStreamsToEnd(w.descriptor(spec.Descriptor), spec.EndTimers)
	for _, k := range spec.EndTimers {
		b.waitTimer[k] = true
	}
	w.mu.Lock()
	w.bundles[instID] = b
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.bundles, instID)
		w.mu.Unlock()
		b.state.end() // waits for a request being served
	}()

	respCh, err := w.instruct(&fnpb.InstructionRequest{
		InstructionId: instID,
		Request: &fnpb.InstructionRequest_ProcessBundle{ProcessBundle: &fnpb.ProcessBundleRequest{
			ProcessBundleDescriptorId: w.bundleDescriptor(spec.Descriptor),
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("starting bundle on worker %s: %w", w.id, err)
	}
	if spec.Started != nil {
		spec.Started(instID)
	}
	go func() { // owned by this call: ends when the response arrives or the worker dies.
		resp, ok := <-respCh
		if !ok {
			b.fail(w.goneErr)
			return
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if msg := resp.GetError(); msg != "" {
			if b.err == nil {
				b.err = &harness.BundleError{Worker: w.id, Instruction: instID, Message: msg}
			}
		} else {
			b.resp = resp.GetProcessBundle()
			if b.resp == nil {
				b.resp = &fnpb.ProcessBundleResponse{}
			}
		}
		b.finishLocked()
	}()

	if err := w.sendInputs(ctx, b, spec); err != nil {
		b.fail(err)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return nil, b.err
	}
	if b.resp.GetRequiresFinalization() {
		w.noteFinalizable(instID, spec.Descriptor)
	}
	return &harness.Result{InstructionID: instID, Outputs: b.outputs, Timers: b.timers, Response: b.resp}, nil
}

// OutputBytes returns how many bytes of data output bundle instID has
// produced so far (0 once it has ended), so that a caller can end a
// bundle whose output grows large.
func (w *Worker) OutputBytes(instID string) int64 {
	b := w.bundle(instID)
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var n int64
	for _, o := range b.outputs {
		n += int64(len(o))
	}
	return n
}

const chunkSize = 1 << 20

// sendInputs sends bundle b's input and timers, then the end of each. A
// harness may open its data stream only when it runs its first bundle; if
// the bundle ends first (the harness answered it with an error), nothing
// is sent and the bundle's own error stands.
func (w *Worker) sendInputs(ctx context.Context, b *bundle, spec harness.BundleSpec) error {
	instID := b.id
	select {
	case <-w.dataReady:
	case <-b.done:
		return nil
	case <-w.gone:
		return w.goneErr
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	data := w.data
	w.mu.Unlock()
	send := func(e *fnpb.Elements) error {
		w.dataMu.Lock()
		defer w.dataMu.Unlock()
		if err := data.Send(e); err != nil {
			w.die(fmt.Errorf("worker %s data send failed (%v): %w", w.id, err, harness.ErrWorkerGone))
			return w.goneErr
		}
		return nil
	}
	for tid, chunks := range spec.Inputs {
		// Small chunks are merged into messages of about chunkSize.
		var msg []byte
		for i, c := range chunks {
			msg = append(msg, c...)
			if len(msg) < chunkSize && i < len(chunks)-1 {
				continue
			}
			if err := send(&fnpb.Elements{Data: []*fnpb.Elements_Data{{InstructionId: instID, TransformId: tid, Data: msg}}}); err != nil {
				return err
			}
			msg = nil
		}
	}
	if len(spec.Timers) > 0 {
		var timers fnpb.Elements
		for k, buf := range spec.Timers {
			timers.Timers = append(timers.Timers, &fnpb.Elements_Timers{InstructionId: instID, TransformId: k.Transform, TimerFamilyId: k.Family, Timers: buf})
		}
		if err := send(&timers); err != nil {
			return err
		}
	}
	var last fnpb.Elements
	for tid := range spec.Inputs {
		last.Data = append(last.Data, &fnpb.Elements_Data{InstructionId: instID, TransformId: tid, IsLast: true})
	}
	for _, k := range spec.EndTimers {
		last.Timers = append(last.Timers, &fnpb.Elements_Timers{InstructionId: instID, TransformId: k.Transform, TimerFamilyId: k.Family, IsLast: true})
	}
	return send(&last)
}

func (w *Worker) serveData(stream fnpb.BeamFnData_DataServer) error {
	w.mu.Lock()
	if w.data != nil {
		w.mu.Unlock()
		return fmt.Errorf("worker %s already has a data stream", w.id)
	}
	w.data = stream
	w.mu.Unlock()
	close(w.dataReady)
	for {
		e, err := stream.Recv()
		if err != nil {
			w.streamEnded("data", err)
			return nil
		}
		for _, d := range e.GetData() {
			if b := w.bundle(d.GetInstructionId()); b != nil {
				b.mu.Lock()
				if len(d.GetData()) > 0 {
					b.outputs[d.GetTransformId()] = append(b.outputs[d.GetTransformId()], d.GetData()...)
				}
				if d.GetIsLast() {
					delete(b.waitData, d.GetTransformId())
					b.finishLocked()
				}
				b.mu.Unlock()
			}
		}
		for _, t := range e.GetTimers() {
			if b := w.bundle(t.GetInstructionId()); b != nil {
				k := harness.TimerKey{Transform: t.GetTransformId(), Family: t.GetTimerFamilyId()}
				b.mu.Lock()
				if len(t.GetTimers()) > 0 {
					b.timers[k] = append(b.timers[k], t.GetTimers()...)
					if !b.endedTimer[k] {
						b.waitTimer[k] = true
					}
				}
				if t.GetIsLast() {
					b.endedTimer[k] = true
					delete(b.waitTimer, k)
					b.finishLocked()
				}
				b.mu.Unlock()
			}
		}
	}
}

func (w *Worker) bundle(id string) *bundle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bundles[id]
}

// serveState reads a harness's state requests and answers each in turn,
// in the order they came: a bundle's requests must be answered in order,
// and serving them on this goroutine (Pebble reads and batch writes take
// microseconds) saves a goroutine hand-off per request, which measured
// about 10% of a stateful pipeline's time.
func (w *Worker) serveState(stream fnpb.BeamFnState_StateServer) error {
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil // the harness closed or lost the stream; bundles fail through control.
		}
		var resp *fnpb.StateResponse
		switch b := w.bundle(req.GetInstructionId()); {
		case b == nil:
			resp = &fnpb.StateResponse{Error: fmt.Sprintf("state request for unknown bundle %q", req.GetInstructionId())}
		default:
			resp = b.state.HandleState(req)
		}
		resp.Id = req.GetId()
		if err := stream.Send(resp); err != nil {
			return nil
		}
	}
}
