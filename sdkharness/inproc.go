package sdkharness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/metrics"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"google.golang.org/protobuf/types/known/durationpb"
)

// InProcess is a worker (a harness.Worker) that runs bundles in this
// process, through the Go SDK's own execution package (exec), without
// gRPC: the pipeline's code is linked into this binary, as it is when a
// pipeline runs with --runner=weir. Bundle input, output and timers are
// handed over as byte slices and every state request is a function call
// into the bundle's StateHandler, where the Fn API would cost each of them
// a gRPC round trip. The engine cannot tell the difference: bundles,
// splits, residuals, metrics and finalization have the Fn API's meaning.
//
// A plan (the SDK's executable form of a descriptor) runs one bundle at a
// time: idle plans are kept per descriptor and reused, as the SDK harness
// does.
type InProcess struct {
	life

	mu         sync.Mutex
	descs      map[string]*fnpb.ProcessBundleDescriptor
	idle       map[string][]*exec.Plan
	running    map[string]*running // by instruction ID
	finalizing map[string]finalizing
	stopped    bool
}

// StartInProcess returns in-process worker id.
func StartInProcess(id string) *InProcess {
	return &InProcess{
		life:       newLife(id),
		descs:      map[string]*fnpb.ProcessBundleDescriptor{},
		idle:       map[string][]*exec.Plan{},
		running:    map[string]*running{},
		finalizing: map[string]finalizing{},
	}
}

// running is a bundle in flight; mu orders a split against the end of the
// bundle, so a split never reaches a plan that has moved on.
type running struct {
	mu   sync.Mutex
	plan *exec.Plan
	data *localData
	done bool
	// failed carries an error that fails the bundle while its plan still
	// runs (a split the SDK refused); aborted says it was sent.
	failed  chan error
	aborted bool
}

// failLocked fails the running bundle with err at once; its plan runs on
// to its end and is then dropped. r.mu is held.
func (r *running) failLocked(err error) {
	if !r.aborted {
		r.aborted = true
		r.failed <- err
	}
}

type finalizing struct {
	desc    string
	plan    *exec.Plan
	expires time.Time
}

// Register makes descriptors known to the worker.
func (l *InProcess) Register(_ context.Context, descs ...*fnpb.ProcessBundleDescriptor) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, d := range descs {
		l.descs[d.GetId()] = d
	}
	return nil
}

// take returns an idle plan for descriptor id, building one if none is idle.
func (l *InProcess) take(id string) (*exec.Plan, error) {
	l.mu.Lock()
	if ps := l.idle[id]; len(ps) > 0 {
		p := ps[len(ps)-1]
		l.idle[id] = ps[:len(ps)-1]
		l.mu.Unlock()
		return p, nil
	}
	d := l.descs[id]
	l.mu.Unlock()
	if d == nil {
		return nil, fmt.Errorf("unknown process bundle descriptor %q", id)
	}
	p, err := exec.UnmarshalPlan(d, nil)
	if err != nil {
		return nil, fmt.Errorf("building the plan of descriptor %q: %w", id, err)
	}
	return p, nil
}

func (l *InProcess) release(id string, p *exec.Plan) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		_ = p.Down(context.Background())
		return
	}
	l.idle[id] = append(l.idle[id], p)
}

// Stop ends the worker: bundles in flight fail, idle plans are torn down.
func (l *InProcess) Stop() {
	l.end(fmt.Errorf("worker %s stopped: %w", l.id, harness.ErrWorkerGone))
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	for _, ps := range l.idle {
		for _, p := range ps {
			_ = p.Down(context.Background())
		}
	}
	l.idle = map[string][]*exec.Plan{}
}

// ProcessBundle runs spec on this process's SDK code. The bundle runs on a
// goroutine of its own, so that a caller whose context ends is not held by
// user code that does not return; that goroutine ends with the bundle.
func (l *InProcess) ProcessBundle(ctx context.Context, spec harness.BundleSpec) (*harness.Result, error) {
	select {
	case <-l.gone:
		return nil, l.goneErr
	default:
	}
	instID := l.newInstructionID()
	p, err := l.take(spec.Descriptor)
	if err != nil {
		return nil, &harness.BundleError{Worker: l.id, Instruction: instID, Message: err.Error()}
	}
	data := newLocalData(spec)
	run := &running{plan: p, data: data, failed: make(chan error, 1)}
	l.mu.Lock()
	l.running[instID] = run
	l.mu.Unlock()
	if spec.Started != nil {
		spec.Started(instID)
	}

	st := &localState{NewStateServer(instID, spec.State, spec.PageBytes)}
	bctx := metrics.SetBundleID(ctx, instID)
	type outcome struct {
		resp *fnpb.ProcessBundleResponse
		err  error
	}
	done := make(chan outcome, 1)
	go func() {
		err := p.Execute(bctx, instID, exec.DataContext{Data: data, State: st})
		st.end()
		run.mu.Lock()
		run.done = true
		aborted := run.aborted
		run.mu.Unlock()
		l.mu.Lock()
		delete(l.running, instID)
		l.mu.Unlock()
		if aborted {
			return // failed already (run.failed); the plan is dropped
		}
		if err != nil {
			// A failed plan may be in any state; it is dropped, as the
			// SDK harness drops it.
			done <- outcome{err: &harness.BundleError{Worker: l.id, Instruction: instID, Message: err.Error()}}
			return
		}
		resp := &fnpb.ProcessBundleResponse{MonitoringInfos: monitoringInfos(p, metrics.GetStore(bctx))}
		for _, cp := range p.Checkpoint() {
			for _, r := range cp.SR.RS {
				resp.ResidualRoots = append(resp.ResidualRoots, &fnpb.DelayedBundleApplication{
					Application:        &fnpb.BundleApplication{TransformId: cp.SR.TId, InputId: cp.SR.InId, Element: r, OutputWatermarks: cp.SR.OW},
					RequestedTimeDelay: durationpb.New(cp.Reapply),
				})
			}
		}
		if exp := p.GetExpirationTime(); time.Now().Before(exp) {
			resp.RequiresFinalization = true
			l.mu.Lock()
			l.finalizing[instID] = finalizing{desc: spec.Descriptor, plan: p, expires: exp}
			l.mu.Unlock()
		} else {
			l.release(spec.Descriptor, p)
		}
		done <- outcome{resp: resp}
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, o.err
		}
		return &harness.Result{InstructionID: instID, Outputs: data.outputs(), Timers: data.timerOutputs(), Response: o.resp}, nil
	case err := <-run.failed:
		st.end()
		return nil, &harness.BundleError{Worker: l.id, Instruction: instID, Message: err.Error()}
	case <-l.gone:
		st.end()
		return nil, l.goneErr
	case <-ctx.Done():
		st.end()
		return nil, ctx.Err()
	}
}

// Split splits a running bundle, answering as the SDK harness would.
func (l *InProcess) Split(ctx context.Context, instID, _ string, fraction float64, estimatedElements int64) (*fnpb.ProcessBundleSplitResponse, error) {
	l.mu.Lock()
	run := l.running[instID]
	l.mu.Unlock()
	if run == nil {
		return &fnpb.ProcessBundleSplitResponse{}, nil
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if run.done {
		return &fnpb.ProcessBundleSplitResponse{}, nil
	}
	sr, err := run.plan.Split(ctx, exec.SplitPoints{Frac: fraction, BufSize: estimatedElements})
	if err != nil {
		// The SDK refused to split a bundle that still runs (its
		// restriction tracker failed): the bundle fails with that error,
		// as the SDK harness would fail it.
		err = fmt.Errorf("splitting bundle %s: %w", instID, err)
		run.failLocked(err)
		return nil, err
	}
	if sr.Unsuccessful {
		return &fnpb.ProcessBundleSplitResponse{}, nil
	}
	resp := &fnpb.ProcessBundleSplitResponse{ChannelSplits: []*fnpb.ProcessBundleSplitResponse_ChannelSplit{{
		TransformId:          run.plan.SourcePTransformID(),
		LastPrimaryElement:   sr.PI,
		FirstResidualElement: sr.RI,
	}}}
	if len(sr.PS) > 0 && len(sr.RS) > 0 {
		for _, e := range sr.PS {
			resp.PrimaryRoots = append(resp.PrimaryRoots, &fnpb.BundleApplication{TransformId: sr.TId, InputId: sr.InId, Element: e})
		}
		for _, e := range sr.RS {
			resp.ResidualRoots = append(resp.ResidualRoots, &fnpb.DelayedBundleApplication{
				Application: &fnpb.BundleApplication{TransformId: sr.TId, InputId: sr.InId, Element: e, OutputWatermarks: sr.OW},
			})
		}
	}
	return resp, nil
}

// Finalize runs the finalization callbacks of a completed bundle.
func (l *InProcess) Finalize(_ context.Context, instID string) error {
	l.mu.Lock()
	f, ok := l.finalizing[instID]
	delete(l.finalizing, instID)
	l.mu.Unlock()
	if !ok {
		return fmt.Errorf("finalizing bundle %s: no bundle awaits finalization", instID)
	}
	if !time.Now().Before(f.expires) {
		l.release(f.desc, f.plan)
		return nil
	}
	err := f.plan.Finalize()
	if err != nil {
		err = fmt.Errorf("finalizing bundle %s: %w", instID, err)
	}
	// A plan the SDK has finalized is not used again: exec.Plan.Finalize
	// gives the plan a new finalizer, but its DoFns keep the old one, so a
	// later bundle on it would register its callbacks where nothing reads
	// them and never ask to be finalized (Go SDK v2.77).
	_ = f.plan.Down(context.Background())
	return err
}

// OutputBytes is how many bytes of data output running bundle instID has
// produced so far (0 once it has ended).
func (l *InProcess) OutputBytes(instID string) int64 {
	l.mu.Lock()
	run := l.running[instID]
	l.mu.Unlock()
	if run == nil {
		return 0
	}
	return run.data.written.Load()
}
