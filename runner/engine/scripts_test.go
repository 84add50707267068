package engine

import (
	"path/filepath"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// TestScripts runs the engine's scripts, testdata/<kind>/<name>, each
// with its kind's runner: gbk and trigger drive one GroupByKey subtask
// (runGBKScript), handover a checkpointed job's metrics and finalizations
// (runHandOverScript), sdk one SDK subtask whose bundles a fake harness
// runs (runSDKScript). Run one alone with -run TestScripts/<kind>/<name>;
// rewrite the expected output with -rewrite.
func TestScripts(t *testing.T) {
	for _, k := range []struct {
		dir string
		run func(*testing.T, string)
	}{
		{"gbk", runGBKScript},
		{"trigger", runGBKScript},
		{"handover", runHandOverScript},
		{"sdk", runSDKScript},
	} {
		t.Run(k.dir, func(t *testing.T) {
			datadriven.Walk(t, filepath.Join("testdata", k.dir), k.run)
		})
	}
}
