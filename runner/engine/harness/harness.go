// Package harness is the engine's contract with an SDK harness: the
// Worker interface through which the engine registers a stage's
// descriptors, runs a bundle, splits it while it runs, watches its output
// grow and finalizes it, and the values those calls carry (a bundle's
// input, timers and state handler; its outputs; a harness's failure).
//
// The engine owns this contract and knows nothing of how a worker does
// its work. Package sdkharness implements it twice, over the Fn API
// (LOOPBACK and PROCESS environments) and in this process through the Go
// SDK's exec package; the engine's tests implement it with a fake that
// needs no SDK at all.
package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// Worker is one SDK harness the engine runs bundles on. Its methods may be
// called from many goroutines; a worker runs several bundles at once.
type Worker interface {
	// ID names the worker in errors and logs.
	ID() string
	// Register makes descriptors known to the worker before a bundle
	// names them.
	Register(ctx context.Context, descs ...*fnpb.ProcessBundleDescriptor) error
	// ProcessBundle runs one bundle and waits for all of its outputs. An
	// error means nothing of the bundle may be used; it wraps
	// ErrWorkerGone when the worker died, and is a *BundleError when the
	// SDK reported the failure (user code or the harness).
	ProcessBundle(ctx context.Context, spec BundleSpec) (*Result, error)
	// Split asks the worker to split running bundle instID at fraction
	// of the remainder of the input its transform source reads. A bundle
	// that has already ended answers with an empty response.
	Split(ctx context.Context, instID, source string, fraction float64, estimatedElements int64) (*fnpb.ProcessBundleSplitResponse, error)
	// OutputBytes is how many bytes of data output running bundle instID
	// has produced so far (0 once it has ended).
	OutputBytes(instID string) int64
	// Finalize runs the finalization callbacks of completed bundle
	// instID (its response asked for finalization).
	Finalize(ctx context.Context, instID string) error
	// Err is nil while the worker lives and says why it is gone after.
	Err() error
	// Stop stops the worker's environment and fails what is in flight.
	Stop()
}

// Starter starts a worker, named workerID, for environment envID.
type Starter func(ctx context.Context, envID, workerID string) (Worker, error)

// DefaultPageBytes is what a zero BundleSpec.PageBytes means.
const DefaultPageBytes = 2 << 20

// ErrWorkerGone is wrapped by every error of a bundle whose worker died.
var ErrWorkerGone = errors.New("sdk harness worker is gone")

// BundleError is a failure reported by the SDK (user code or harness).
type BundleError struct {
	Worker, Instruction, Message string
}

func (e *BundleError) Error() string {
	return fmt.Sprintf("bundle %s failed on worker %s: %s", e.Instruction, e.Worker, e.Message)
}

// TimerKey names a timer stream of a bundle.
type TimerKey struct{ Transform, Family string }

// BundleSpec is one bundle to run.
type BundleSpec struct {
	Descriptor string
	// Inputs maps a data source transform ID to its encoded elements, in
	// chunks that each hold whole elements: the Go harness decodes every
	// data message on its own.
	Inputs map[string][][]byte
	// Timers maps timer streams to concatenated encoded timers sent to the
	// harness.
	Timers map[TimerKey][]byte
	// EndTimers are the timer streams (every family of every stateful
	// transform) to end with is_last. The Go harness opens a writer for
	// each stream the runner ends, and for each it sets timers on, so it
	// answers with is_last on each of them when the bundle ends: the
	// bundle waits for all of them, which is the only thing that orders
	// its timers before its completion when the stage has no data sink.
	// (Over the Fn API a Go environment gets only the first family of each
	// transform ended: see sdkharness's timerStreamsToEnd.)
	EndTimers []TimerKey
	// Outputs are the data sink transform IDs the harness will end with
	// is_last.
	Outputs []string
	// State serves the bundle's state requests; nil refuses them.
	State State
	// PageBytes bounds the data of one state response (0: 2 MiB); a
	// larger value continues with a continuation token.
	PageBytes int
	// Started is called with the instruction ID once the bundle is sent.
	Started func(instID string)
}

// Result is what a successful bundle produced.
type Result struct {
	InstructionID string
	Outputs       map[string][]byte
	Timers        map[TimerKey][]byte
	Response      *fnpb.ProcessBundleResponse
}

// goSDKBase is the capability prefix the Go SDK puts on its environments
// (graphx.URNBaseVersionGo).
const goSDKBase = "beam:version:sdk_base:go"

// GoEnvironment reports whether env is one the Go SDK declared, whose
// harness needs workarounds for its timer handling (one is_last per
// transform over the Fn API, and one timer family per key in a timer
// bundle: see the engine's keyed.firable).
func GoEnvironment(env *pipepb.Environment) bool {
	for _, c := range env.GetCapabilities() {
		if strings.HasPrefix(c, goSDKBase) {
			return true
		}
	}
	return false
}
