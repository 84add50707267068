package sdkharness

import (
	"context"
	"fmt"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"google.golang.org/protobuf/proto"
)

// The Go SDK's harness (v2.77) breaks a plan's bundle finalization once
// the plan has been finalized: exec.Plan.Finalize gives the plan a new
// finalizer, but the plan's DoFns keep the old one, so a later bundle on
// that plan registers its callbacks where nothing reads them, reports
// that it needs no finalization, and its callbacks are lost. The harness
// puts a finalized plan back in its pool for the descriptor, so weir
// never sends that descriptor ID again: after finalizing a bundle of a
// Go environment it registers the same descriptor under a fresh ID
// ("<id>~<n>"), for which the harness builds a fresh plan. The engine
// keeps naming the descriptor by its own ID.

// bundleDescriptor is the ID the harness is to run descriptor id under.
func (w *Worker) bundleDescriptor(id string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if a, ok := w.replanned[id]; ok {
		return a
	}
	return id
}

// noteFinalizable remembers which descriptor bundle instID ran, until it
// is finalized.
func (w *Worker) noteFinalizable(instID, desc string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.finalizable[instID] = desc
}

// replan registers the descriptor of finalized bundle instID under a
// fresh ID if its plan may not be finalized again.
func (w *Worker) replan(ctx context.Context, instID string) error {
	w.mu.Lock()
	desc, ok := w.finalizable[instID]
	delete(w.finalizable, instID)
	d := w.descriptors[desc]
	w.mu.Unlock()
	if !ok || d == nil || !goEnvironment(d, anyTransform(d)) {
		return nil
	}
	w.mu.Lock()
	w.replans++
	clone := proto.Clone(d).(*fnpb.ProcessBundleDescriptor)
	clone.Id = fmt.Sprintf("%s~%d", desc, w.replans)
	w.descriptors[clone.Id] = clone
	w.mu.Unlock()
	resp, err := w.call(ctx, &fnpb.InstructionRequest{
		InstructionId: w.newInstructionID(),
		Request:       &fnpb.InstructionRequest_Register{Register: &fnpb.RegisterRequest{ProcessBundleDescriptor: []*fnpb.ProcessBundleDescriptor{clone}}},
	})
	if err == nil && resp.GetError() != "" {
		err = fmt.Errorf("%s", resp.GetError())
	}
	if err != nil {
		return fmt.Errorf("registering descriptor %s again as %s on worker %s: %w", desc, clone.Id, w.id, err)
	}
	w.mu.Lock()
	w.replanned[desc] = clone.Id
	w.mu.Unlock()
	return nil
}

// anyTransform is a transform of d that runs user code (one whose
// environment is set), or "".
func anyTransform(d *fnpb.ProcessBundleDescriptor) string {
	for id, t := range d.GetTransforms() {
		if t.GetEnvironmentId() != "" {
			return id
		}
	}
	return ""
}
