package sdkharness

import (
	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// timerStreamsToEnd returns which of a bundle's timer streams the runner
// ends with is_last. The Fn API ends every (transform, family) stream, and
// Python's and Java's harnesses wait for each. The Go harness counts one
// is_last per transform that has timers (datamgr's elementsChan wants
// 1 + #timer transforms): a second family's is_last either closes the
// reader before that family's timers are read or, when all arrive before
// the instruction opens its reader, leaves the count past what it waits
// for and the bundle hangs. So for a descriptor whose transforms run in a
// Go environment only the first family of each transform is ended; the
// timers of the others still travel before that is_last on the same
// ordered stream.
func timerStreamsToEnd(d *fnpb.ProcessBundleDescriptor, streams []harness.TimerKey) []harness.TimerKey {
	var out []harness.TimerKey
	seen := map[string]bool{}
	for _, k := range streams {
		if goEnvironment(d, k.Transform) {
			if seen[k.Transform] {
				continue
			}
			seen[k.Transform] = true
		}
		out = append(out, k)
	}
	return out
}

// goEnvironment reports whether transform runs in an environment the Go
// SDK declared.
func goEnvironment(d *fnpb.ProcessBundleDescriptor, transform string) bool {
	return harness.GoEnvironment(d.GetEnvironments()[d.GetTransforms()[transform].GetEnvironmentId()])
}
