package sdkharness

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"google.golang.org/protobuf/types/known/structpb"
)

// Worker is an SDK harness connected over the Fn API (a harness.Worker).
type Worker struct {
	life
	srv            *Server
	options        *structpb.Struct
	retrievalToken string
	dependencies   []*pipepb.ArtifactInformation
	stop           func() // stops the environment (process kill, pool StopWorker)

	connected chan struct{} // closed when the control stream attaches

	mu          sync.Mutex
	control     fnpb.BeamFnControl_ControlServer
	controlMu   sync.Mutex // serialises Send on control
	data        fnpb.BeamFnData_DataServer
	dataReady   chan struct{}
	dataMu      sync.Mutex // serialises Send on data
	descriptors map[string]*fnpb.ProcessBundleDescriptor
	// replanned maps a descriptor to the ID it now runs under, finalizable
	// a bundle awaiting finalization to its descriptor (replan.go).
	replanned   map[string]string
	finalizable map[string]string
	replans     int
	pending     map[string]chan *fnpb.InstructionResponse
	bundles     map[string]*bundle
	// finalizing keeps finalizations apart from running bundles: the Go
	// SDK's harness (v2.77, harness.go) handles FinalizeBundle without its
	// lock on the maps a bundle's completion updates, and a finalization
	// arriving as a bundle completes crashed the worker's process
	// ("concurrent map iteration and map write"). Bundles hold it shared
	// from their instruction to their response; Finalize holds it alone.
	finalizing sync.RWMutex
}

func newWorker(srv *Server, id string, opts *structpb.Struct) *Worker {
	return &Worker{
		life:        newLife(id),
		srv:         srv,
		options:     opts,
		connected:   make(chan struct{}),
		dataReady:   make(chan struct{}),
		descriptors: map[string]*fnpb.ProcessBundleDescriptor{},
		replanned:   map[string]string{},
		finalizable: map[string]string{},
		pending:     map[string]chan *fnpb.InstructionResponse{},
		bundles:     map[string]*bundle{},
	}
}

// Stop stops the worker's environment and fails whatever is in flight.
func (w *Worker) Stop() {
	w.die(fmt.Errorf("worker %s stopped: %w", w.id, harness.ErrWorkerGone))
	if w.stop != nil {
		w.stop()
	}
}

func (w *Worker) die(err error) {
	if w.end(err) {
		w.srv.removeWorker(w.id)
		w.mu.Lock()
		for _, b := range w.bundles {
			b.fail(err)
		}
		for _, ch := range w.pending {
			close(ch)
		}
		w.pending = map[string]chan *fnpb.InstructionResponse{}
		w.mu.Unlock()
	}
}

// WaitConnected waits until the harness has opened its control stream.
func (w *Worker) WaitConnected(ctx context.Context) error {
	select {
	case <-w.connected:
		return nil
	case <-w.gone:
		return w.goneErr
	case <-ctx.Done():
		return fmt.Errorf("waiting for worker %s to connect: %w", w.id, ctx.Err())
	}
}

func (w *Worker) serveControl(stream fnpb.BeamFnControl_ControlServer) error {
	w.mu.Lock()
	if w.control != nil {
		w.mu.Unlock()
		return fmt.Errorf("worker %s already has a control stream", w.id)
	}
	w.control = stream
	w.mu.Unlock()
	close(w.connected)
	for {
		resp, err := stream.Recv()
		if err != nil {
			w.streamEnded("control", err)
			return nil
		}
		w.mu.Lock()
		ch, ok := w.pending[resp.GetInstructionId()]
		delete(w.pending, resp.GetInstructionId())
		w.mu.Unlock()
		if ok {
			ch <- resp // buffered, never blocks
		}
	}
}

// streamEnded declares the worker gone because one of its streams ended.
func (w *Worker) streamEnded(stream string, err error) {
	if err == io.EOF {
		err = nil
	}
	w.die(fmt.Errorf("worker %s %s stream ended (%v): %w", w.id, stream, err, harness.ErrWorkerGone))
}

func (w *Worker) descriptor(id string) *fnpb.ProcessBundleDescriptor {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.descriptors[id]
}

// instruct sends req and returns a channel that yields its response (closed
// without a value if the worker dies).
func (w *Worker) instruct(req *fnpb.InstructionRequest) (<-chan *fnpb.InstructionResponse, error) {
	ch := make(chan *fnpb.InstructionResponse, 1)
	w.mu.Lock()
	select {
	case <-w.gone:
		w.mu.Unlock()
		return nil, w.goneErr
	default:
	}
	w.pending[req.GetInstructionId()] = ch
	ctrl := w.control
	w.mu.Unlock()
	if ctrl == nil {
		return nil, fmt.Errorf("worker %s is not connected: %w", w.id, harness.ErrWorkerGone)
	}
	w.controlMu.Lock()
	err := ctrl.Send(req)
	w.controlMu.Unlock()
	if err != nil {
		w.die(fmt.Errorf("worker %s control send failed (%v): %w", w.id, err, harness.ErrWorkerGone))
		return nil, w.goneErr
	}
	return ch, nil
}

// call sends req and waits for its response.
func (w *Worker) call(ctx context.Context, req *fnpb.InstructionRequest) (*fnpb.InstructionResponse, error) {
	if err := context.Cause(ctx); err != nil {
		return nil, err // not sent: nobody would wait for its response
	}
	ch, err := w.instruct(req)
	if err != nil {
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, w.goneErr
		}
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Register makes descriptors known to the harness: it serves them to
// GetProcessBundleDescriptor, and sends those of Go environments in a
// register instruction. A harness that refuses that instruction is no
// error: it fetches each descriptor when a bundle first names it, and a
// bundle it cannot run fails with its own message (foreign.go).
func (w *Worker) Register(ctx context.Context, descs ...*fnpb.ProcessBundleDescriptor) error {
	var sent []*fnpb.ProcessBundleDescriptor
	w.mu.Lock()
	for _, d := range descs {
		if w.harnessDescriptor(d) {
			sent = append(sent, d)
		}
	}
	w.mu.Unlock()
	if len(sent) == 0 {
		return nil
	}
	resp, err := w.call(ctx, &fnpb.InstructionRequest{
		InstructionId: w.newInstructionID(),
		Request:       &fnpb.InstructionRequest_Register{Register: &fnpb.RegisterRequest{ProcessBundleDescriptor: sent}},
	})
	if err != nil {
		return fmt.Errorf("registering descriptors with worker %s: %w", w.id, err)
	}
	if msg := resp.GetError(); msg != "" {
		w.srv.log.Info("worker refused registration; it is to fetch descriptors itself", "worker", w.id, "answer", msg)
	}
	return nil
}

// Split asks the harness to split a running bundle at fraction of the
// remainder of the input read by sourceTransform.
func (w *Worker) Split(ctx context.Context, instID, sourceTransform string, fraction float64, estimatedElements int64) (*fnpb.ProcessBundleSplitResponse, error) {
	resp, err := w.call(ctx, &fnpb.InstructionRequest{
		InstructionId: w.newInstructionID(),
		Request: &fnpb.InstructionRequest_ProcessBundleSplit{ProcessBundleSplit: &fnpb.ProcessBundleSplitRequest{
			InstructionId: instID,
			DesiredSplits: map[string]*fnpb.ProcessBundleSplitRequest_DesiredSplit{
				sourceTransform: {FractionOfRemainder: fraction, EstimatedInputElements: estimatedElements},
			},
		}},
	})
	if err != nil {
		return nil, fmt.Errorf("splitting bundle %s: %w", instID, err)
	}
	if msg := resp.GetError(); msg != "" {
		err := fmt.Errorf("splitting bundle %s: %s", instID, msg)
		// The SDK refused to split a bundle it still runs (its restriction
		// tracker failed): the bundle fails with that error. A bundle the
		// SDK has finished is no longer active there, which is no failure
		// (the Go SDK says "not active", others "not found").
		if b := w.bundle(instID); b != nil && !strings.Contains(msg, "not active") && !strings.Contains(msg, "not found") {
			b.fail(&harness.BundleError{Worker: w.id, Instruction: instID, Message: err.Error()})
		}
		return nil, err
	}
	return resp.GetProcessBundleSplit(), nil
}

// Finalize runs the bundle finalization callbacks of a completed bundle.
func (w *Worker) Finalize(ctx context.Context, instID string) error {
	w.finalizing.Lock()
	defer w.finalizing.Unlock()
	resp, err := w.call(ctx, &fnpb.InstructionRequest{
		InstructionId: w.newInstructionID(),
		Request:       &fnpb.InstructionRequest_FinalizeBundle{FinalizeBundle: &fnpb.FinalizeBundleRequest{InstructionId: instID}},
	})
	if err != nil {
		return fmt.Errorf("finalizing bundle %s: %w", instID, err)
	}
	if msg := resp.GetError(); msg != "" {
		return fmt.Errorf("finalizing bundle %s: %s", instID, msg)
	}
	return w.replan(ctx, instID)
}
