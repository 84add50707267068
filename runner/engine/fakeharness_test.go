package engine

// A fake harness.Worker: the engine's bundle, retry, split and
// finalization paths run against it without any SDK, each bundle's
// behaviour scripted by the test.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/jonboulle/clockwork"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
)

// fakeBundle is what a scripted bundle sees and can do.
type fakeBundle struct {
	w    *fakeWorker
	inst string
	spec harness.BundleSpec
	// out is the data output; a running bundle's OutputBytes is its size.
	mu     sync.Mutex
	out    map[string][]byte
	timers map[harness.TimerKey][]byte
}

// setTimers sets (or clears) timers of a family, encoded as the SDK does.
func (b *fakeBundle) setTimers(k harness.TimerKey, encoded []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.timers == nil {
		b.timers = map[harness.TimerKey][]byte{}
	}
	b.timers[k] = append(b.timers[k], encoded...)
}

func (b *fakeBundle) emit(sink string, data []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.out[sink] = append(b.out[sink], data...)
}

// fakeScript runs one bundle on a fake worker: it returns the bundle's
// response, or an error to fail it (kill the worker for ErrWorkerGone).
type fakeScript func(ctx context.Context, b *fakeBundle) (*fnpb.ProcessBundleResponse, error)

// fakeHarness starts fakeWorkers that run every bundle with script, and
// records what the engine asked of them.
type fakeHarness struct {
	script fakeScript
	split  func(b *fakeBundle, fraction float64) (*fnpb.ProcessBundleSplitResponse, error)

	mu         sync.Mutex
	workers    []*fakeWorker
	registered map[string][]string // worker → descriptor IDs
	bundles    []string            // "worker/descriptor", in start order
	splits     []float64
	finalized  []string
}

func (h *fakeHarness) start(_ context.Context, env, id string) (harness.Worker, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := &fakeWorker{h: h, id: env + "/" + id, running: map[string]*fakeBundle{}}
	h.workers = append(h.workers, w)
	return w, nil
}

type fakeWorker struct {
	h  *fakeHarness
	id string

	mu      sync.Mutex
	n       int
	err     error
	running map[string]*fakeBundle
}

func (w *fakeWorker) ID() string { return w.id }

func (w *fakeWorker) Register(_ context.Context, descs ...*fnpb.ProcessBundleDescriptor) error {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if w.h.registered == nil {
		w.h.registered = map[string][]string{}
	}
	for _, d := range descs {
		w.h.registered[w.id] = append(w.h.registered[w.id], d.GetId())
	}
	return nil
}

func (w *fakeWorker) ProcessBundle(ctx context.Context, spec harness.BundleSpec) (*harness.Result, error) {
	if err := w.Err(); err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.n++
	b := &fakeBundle{w: w, inst: fmt.Sprintf("%s-%d", w.id, w.n), spec: spec, out: map[string][]byte{}}
	w.running[b.inst] = b
	w.mu.Unlock()
	w.h.mu.Lock()
	w.h.bundles = append(w.h.bundles, w.id+"/"+spec.Descriptor)
	w.h.mu.Unlock()
	if spec.Started != nil {
		spec.Started(b.inst)
	}
	resp, err := w.h.script(ctx, b)
	w.mu.Lock()
	delete(w.running, b.inst)
	w.mu.Unlock()
	if errors.Is(err, harness.ErrWorkerGone) {
		w.Stop()
		return nil, fmt.Errorf("worker %s: %w", w.id, err)
	}
	if err != nil {
		return nil, &harness.BundleError{Worker: w.id, Instruction: b.inst, Message: err.Error()}
	}
	if resp == nil {
		resp = &fnpb.ProcessBundleResponse{}
	}
	return &harness.Result{InstructionID: b.inst, Outputs: b.out, Timers: b.timers, Response: resp}, nil
}

func (w *fakeWorker) bundle(inst string) *fakeBundle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running[inst]
}

func (w *fakeWorker) Split(_ context.Context, inst, _ string, fraction float64, _ int64) (*fnpb.ProcessBundleSplitResponse, error) {
	b := w.bundle(inst)
	if b == nil || w.h.split == nil {
		return &fnpb.ProcessBundleSplitResponse{}, nil
	}
	w.h.mu.Lock()
	w.h.splits = append(w.h.splits, fraction)
	w.h.mu.Unlock()
	return w.h.split(b, fraction)
}

func (w *fakeWorker) OutputBytes(inst string) int64 {
	b := w.bundle(inst)
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, o := range b.out {
		n += len(o)
	}
	return int64(n)
}

func (w *fakeWorker) Finalize(_ context.Context, inst string) error {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	w.h.finalized = append(w.h.finalized, inst)
	return nil
}

func (w *fakeWorker) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func (w *fakeWorker) Stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = fmt.Errorf("worker %s stopped: %w", w.id, harness.ErrWorkerGone)
	}
}

// fakeTask is an sdkTask of a stateless stage "s" (source "src", one sink
// "sink") whose bundles run on h's workers.
func fakeTask(h *fakeHarness, attempts int) *sdkTask {
	st := &plan.Stage{ID: "s", Name: "Fake", EnvID: "env", SourceID: "src", SinkIDs: map[string]string{"out": "sink"}}
	e := &Engine{o: Options{Clock: clockwork.NewRealClock(), Limits: DefaultLimits, MaxAttempts: attempts, Logger: slog.New(slog.DiscardHandler)}}
	e.pool = &pool{start: h.start, workers: map[string]harness.Worker{}, log: e.o.Logger}
	e.pool.addDescriptor("env", &fnpb.ProcessBundleDescriptor{Id: "s"})
	return &sdkTask{subtask: subtask{stage: st, e: e}, outputs: []string{"sink"}, sinkTo: map[string]string{"sink": "out"},
		side: &sideState{inputs: map[[2]string]*sideInput{}}}
}

// TestBundleRetries: a bundle whose worker dies runs again at once on a
// new worker, which gets every descriptor first; one whose user code
// fails runs again on the same worker; a bundle that fails every attempt
// fails its stage with the SDK's message.
func TestBundleRetries(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failures []error // of the first attempts, in order
		attempts int
		bundles  string // worker/descriptor per attempt
		workers  int
		err      string
	}{
		{name: "ok", attempts: 1, bundles: "env/w1/s", workers: 1},
		{name: "worker-dies", failures: []error{harness.ErrWorkerGone}, attempts: 4,
			bundles: "env/w1/s env/w2/s", workers: 2},
		{name: "user-code-fails", failures: []error{errors.New("boom")}, attempts: 4,
			bundles: "env/w1/s env/w1/s", workers: 1},
		{name: "both", failures: []error{errors.New("boom"), harness.ErrWorkerGone, errors.New("boom")}, attempts: 4,
			bundles: "env/w1/s env/w1/s env/w2/s env/w2/s", workers: 2},
		{name: "gives-up", failures: []error{errors.New("boom 1"), errors.New("boom 2")}, attempts: 2,
			bundles: "env/w1/s env/w1/s", workers: 1, err: `stage "Fake" failed after 2 attempts: boom 2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			h := &fakeHarness{script: func(_ context.Context, b *fakeBundle) (*fnpb.ProcessBundleResponse, error) {
				n++
				if n <= len(tc.failures) {
					return nil, tc.failures[n-1]
				}
				for _, in := range b.spec.Inputs["src"] {
					b.emit("sink", append([]byte("seen:"), in...))
				}
				return nil, nil
			}}
			task := fakeTask(h, tc.attempts)
			res, _, err := task.process(testCtx(t), [][]byte{[]byte("a"), []byte("b")}, nil)
			if got := strings.Join(h.bundles, " "); got != tc.bundles {
				t.Errorf("bundles ran as %q, want %q", got, tc.bundles)
			}
			if len(h.workers) != tc.workers {
				t.Errorf("%d workers started, want %d", len(h.workers), tc.workers)
			}
			for _, w := range h.workers {
				if got := h.registered[w.id]; len(got) != 1 || got[0] != "s" {
					t.Errorf("worker %s was registered %v, want [s]", w.id, got)
				}
			}
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(res.Outputs["sink"]); got != "seen:aseen:b" {
				t.Errorf("output %q, want %q", got, "seen:aseen:b")
			}
		})
	}
}

// TestLongSplittableBundleIsCheckpointed: a splittable bundle whose output
// passes BundleOutputBytes is split at fraction 0 (ended, the rest kept
// as a residual for this subtask), at the first look after it passes.
func TestLongSplittableBundleIsCheckpointed(t *testing.T) {
	release := make(chan struct{})
	h := &fakeHarness{script: func(ctx context.Context, b *fakeBundle) (*fnpb.ProcessBundleResponse, error) {
		b.emit("sink", make([]byte, 64))
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}}
	h.split = func(_ *fakeBundle, fraction float64) (*fnpb.ProcessBundleSplitResponse, error) {
		defer close(release) // a second split would panic here
		return &fnpb.ProcessBundleSplitResponse{
			PrimaryRoots: []*fnpb.BundleApplication{{TransformId: "sdf", InputId: "in", Element: []byte("done")}},
			ResidualRoots: []*fnpb.DelayedBundleApplication{{
				Application: &fnpb.BundleApplication{TransformId: "sdf", InputId: "in", Element: []byte("rest")},
			}},
			ChannelSplits: []*fnpb.ProcessBundleSplitResponse_ChannelSplit{{TransformId: "src", LastPrimaryElement: 0, FirstResidualElement: 1}},
		}, nil
	}
	task := fakeTask(h, 1)
	task.stage.Splittable = "sdf"
	task.e.o.Limits.BundleOutputBytes = 32
	task.e.o.Limits.SplitCheck = time.Millisecond
	task.e.o.Limits.BundleTime = time.Hour
	if _, _, err := task.process(testCtx(t), [][]byte{[]byte("x")}, nil); err != nil {
		t.Fatal(err)
	}
	if len(h.splits) != 1 || h.splits[0] != 0 {
		t.Errorf("splits asked at fractions %v, want [0]", h.splits)
	}
	if got := fmt.Sprintf("%q", task.checkpointed); got != `["rest"]` {
		t.Errorf("residuals kept for this subtask: %s, want [\"rest\"]", got)
	}
}
