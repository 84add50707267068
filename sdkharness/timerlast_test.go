package sdkharness

import (
	"reflect"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

func TestTimerStreamsToEnd(t *testing.T) {
	d := &fnpb.ProcessBundleDescriptor{
		Transforms: map[string]*pipepb.PTransform{
			"goA": {EnvironmentId: "go"}, "goB": {EnvironmentId: "go"}, "py": {EnvironmentId: "py"},
		},
		Environments: map[string]*pipepb.Environment{
			"go": {Capabilities: []string{"beam:protocol:progress_reporting:v0", "beam:version:sdk_base:go:apache/beam_go_sdk:2.66.0"}},
			"py": {Capabilities: []string{"beam:version:sdk_base:apache/beam_python3.11_sdk:2.66.0"}},
		},
	}
	k := func(tr, f string) harness.TimerKey { return harness.TimerKey{Transform: tr, Family: f} }
	for _, c := range []struct {
		name     string
		in, want []harness.TimerKey
	}{
		{"none", nil, nil},
		{"one family", []harness.TimerKey{k("goA", "x")}, []harness.TimerKey{k("goA", "x")}},
		{"go: first family per transform", []harness.TimerKey{k("goA", "x"), k("goA", "y"), k("goB", "y"), k("goA", "z")}, []harness.TimerKey{k("goA", "x"), k("goB", "y")}},
		{"other SDKs: every family", []harness.TimerKey{k("py", "x"), k("py", "y")}, []harness.TimerKey{k("py", "x"), k("py", "y")}},
		{"unknown transform: every family", []harness.TimerKey{k("?", "x"), k("?", "y")}, []harness.TimerKey{k("?", "x"), k("?", "y")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := timerStreamsToEnd(d, c.in); !reflect.DeepEqual(got, c.want) {
				t.Errorf("timerStreamsToEnd(%v) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}
