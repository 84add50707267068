// Package conformance describes Beam's own Go test suites that weir must pass
// and the skip list of the few tests that cannot run on any portable runner
// (skiplist.txt, each with its reason). The driver that builds and runs them
// against weir is conformance/cmd/conform; conformance/metamorphic is weir's
// differential test harness.
package conformance

import "time"

// BeamGo is the import path prefix of Beam's Go SDK.
const BeamGo = "github.com/apache/beam/sdks/v2/go"

// Suite is one of Beam's test packages, built once with `go test -c` and run
// against a weir job server.
type Suite struct {
	// Name is the package's last path element; it names the cached test
	// binary and is the first field of a skiplist.txt line.
	Name string
	// Pkg is the import path of the package.
	Pkg string
	// Timeout bounds one run of the whole suite (passed as -test.timeout).
	Timeout time.Duration
	// Disabled, when not empty, says why the suite does not run by default.
	// It still runs when named explicitly with --suites.
	Disabled string
}

// Suites are the suites the conformance driver runs, in order.
var Suites = []Suite{
	{Name: "passert", Pkg: BeamGo + "/pkg/beam/testing/passert", Timeout: 10 * time.Minute},
	{Name: "primitives", Pkg: BeamGo + "/test/integration/primitives", Timeout: 20 * time.Minute},
	{Name: "synthetic", Pkg: BeamGo + "/test/integration/synthetic", Timeout: 10 * time.Minute},
	{Name: "wordcount", Pkg: BeamGo + "/test/integration/wordcount", Timeout: 10 * time.Minute},
	{Name: "regression", Pkg: BeamGo + "/test/regression", Timeout: 10 * time.Minute},
	{Name: "stats", Pkg: BeamGo + "/pkg/beam/transforms/stats", Timeout: 10 * time.Minute},
	{Name: "filter", Pkg: BeamGo + "/pkg/beam/transforms/filter", Timeout: 10 * time.Minute},
	{Name: "top", Pkg: BeamGo + "/pkg/beam/transforms/top", Timeout: 10 * time.Minute},
	{Name: "batch", Pkg: BeamGo + "/pkg/beam/transforms/batch", Timeout: 10 * time.Minute},
	{Name: "periodic", Pkg: BeamGo + "/pkg/beam/transforms/periodic", Timeout: 10 * time.Minute},
}

// SuiteByName returns the suite with the given name.
func SuiteByName(name string) (Suite, bool) {
	for _, s := range Suites {
		if s.Name == name {
			return s, true
		}
	}
	return Suite{}, false
}
