package sdkharness

import (
	"fmt"
	"time"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// Default liveness settings: a harness with a bundle in flight must answer
// a progress request within HeartbeatTimeout.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHeartbeatTimeout  = 60 * time.Second
)

// watch detects a hung harness: while bundles are in flight it asks for
// the progress of one every interval, and if no answer comes within
// timeout it declares the worker gone and stops its environment, which
// fails its bundles with harness.ErrWorkerGone so they are retried elsewhere.
// It ends with the worker.
func (w *Worker) watch(interval, timeout time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-w.gone:
			return
		case <-tick.C:
		}
		inst := w.anyBundle()
		if inst == "" {
			continue
		}
		ch, err := w.instruct(&fnpb.InstructionRequest{
			InstructionId: w.newInstructionID(),
			Request: &fnpb.InstructionRequest_ProcessBundleProgress{
				ProcessBundleProgress: &fnpb.ProcessBundleProgressRequest{InstructionId: inst},
			},
		})
		if err != nil {
			return // the worker is gone already
		}
		t := time.NewTimer(timeout)
		select {
		case <-ch:
			t.Stop()
		case <-w.gone:
			t.Stop()
			return
		case <-t.C:
			w.die(fmt.Errorf("worker %s did not answer a progress request for bundle %s within %v: %w", w.id, inst, timeout, harness.ErrWorkerGone))
			if w.stop != nil {
				w.stop()
			}
			return
		}
	}
}

func (w *Worker) anyBundle() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.bundles {
		return id
	}
	return ""
}

// startWatch starts the liveness check with o's settings (defaults if zero).
func (w *Worker) startWatch(o WorkerOptions) {
	interval, timeout := o.HeartbeatInterval, o.HeartbeatTimeout
	if interval <= 0 {
		interval = DefaultHeartbeatInterval
	}
	if timeout <= 0 {
		timeout = DefaultHeartbeatTimeout
	}
	go w.watch(interval, timeout) // owned by the worker: ends when it is gone.
}
