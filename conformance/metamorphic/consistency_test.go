package metamorphic

import (
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/weir-runner/weir/runner/engine"
)

// The model's time bounds and fault names are Beam's and weir's.
func TestModelConstantsMatch(t *testing.T) {
	if MinTS != int64(mtime.MinTimestamp) || MaxTS != int64(mtime.MaxTimestamp) || EndOfGlobal != int64(mtime.EndOfGlobalWindowTime) {
		t.Errorf("time bounds %d %d %d, Beam's %d %d %d", MinTS, MaxTS, EndOfGlobal, mtime.MinTimestamp, mtime.MaxTimestamp, mtime.EndOfGlobalWindowTime)
	}
	want := []string{engine.FaultBundle, engine.FaultSnapshot, engine.FaultUpload, engine.FaultBeforeCommit, engine.FaultAfterCommit}
	for i, p := range want {
		if faultPoints[i] != p {
			t.Errorf("fault point %d is %q, engine's %q", i, faultPoints[i], p)
		}
	}
}
