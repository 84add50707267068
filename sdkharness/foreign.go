package sdkharness

import (
	"context"
	"maps"
	"slices"
	"sort"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Harnesses of other SDKs. Beam's TypeScript SDK (2.49) differs from the
// Go SDK's harness in three ways weir must allow for:
//
//   - it answers the register instruction with "Unknown instruction type"
//     and fetches each descriptor itself with GetProcessBundleDescriptor
//     when a bundle first names it. Worse, its control stream takes
//     messages of at most 4 MiB, and one register of all of a pipeline's
//     descriptors is larger (their closures are serialized into them):
//     the harness's process dies. So only the Go SDK's harness is sent
//     register instructions; any other fetches each descriptor as it needs
//     it, as the Fn API allows, and a refused register is no error
//     (Worker.Register);
//   - that call carries no worker_id metadata, so the descriptor is found
//     by its ID alone (Server.descriptorByID): a harness of an SDK other
//     than Go gets every descriptor under an ID unique to its worker
//     ("<descriptor>@<worker>", harnessDescriptor), so that two jobs whose
//     plans both have a stage s1 do not make the ID ambiguous;
//   - it opens its data stream only when it runs its first bundle, so a
//     bundle it fails at once (a descriptor it cannot use) fails without
//     waiting for that stream (Worker.sendInputs).

// harnessDescriptor records d and reports whether to register it with the
// harness. The Go SDK's harness always sends worker_id, gets d as it is and
// is sent it; any other fetches a copy under an ID unique to this worker.
// Call with w.mu held.
func (w *Worker) harnessDescriptor(d *fnpb.ProcessBundleDescriptor) (push bool) {
	w.descriptors[d.GetId()] = d
	if goEnvironment(d, anyTransform(d)) {
		return true
	}
	alias := proto.Clone(d).(*fnpb.ProcessBundleDescriptor)
	alias.Id = d.GetId() + "@" + w.id
	w.descriptors[alias.Id] = alias
	w.replanned[d.GetId()] = alias.Id
	return false
}

// descriptorByID serves a GetProcessBundleDescriptor that carries no
// worker_id: the descriptor registered under id, if every worker that
// knows id has the same one.
func (s *Server) descriptorByID(_ context.Context, id string) (*fnpb.ProcessBundleDescriptor, error) {
	s.mu.Lock()
	workers := slices.Collect(maps.Values(s.workers))
	s.mu.Unlock()
	var found *fnpb.ProcessBundleDescriptor
	var holders []string
	same := true
	for _, w := range workers {
		d := w.descriptor(id)
		if d == nil {
			continue
		}
		holders = append(holders, w.id)
		if found == nil {
			found = d
		} else if !proto.Equal(found, d) {
			same = false
		}
	}
	switch {
	case found == nil:
		return nil, status.Errorf(codes.NotFound, "unknown process bundle descriptor %q (asked without worker_id)", id)
	case !same:
		sort.Strings(holders)
		return nil, status.Errorf(codes.FailedPrecondition, "process bundle descriptor %q asked without worker_id: workers %v hold different descriptors under that ID; send worker_id metadata", id, holders)
	}
	return found, nil
}
