package sdkharness

import (
	"reflect"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
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
	k := func(tr, f string) TimerKey { return TimerKey{Transform: tr, Family: f} }
	for _, c := range []struct {
		name     string
		in, want []TimerKey
	}{
		{"none", nil, nil},
		{"one family", []TimerKey{k("goA", "x")}, []TimerKey{k("goA", "x")}},
		{"go: first family per transform", []TimerKey{k("goA", "x"), k("goA", "y"), k("goB", "y"), k("goA", "z")}, []TimerKey{k("goA", "x"), k("goB", "y")}},
		{"other SDKs: every family", []TimerKey{k("py", "x"), k("py", "y")}, []TimerKey{k("py", "x"), k("py", "y")}},
		{"unknown transform: every family", []TimerKey{k("?", "x"), k("?", "y")}, []TimerKey{k("?", "x"), k("?", "y")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := timerStreamsToEnd(d, c.in); !reflect.DeepEqual(got, c.want) {
				t.Errorf("timerStreamsToEnd(%v) = %v, want %v", c.in, got, c.want)
			}
		})
	}
}
