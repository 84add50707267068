//go:build tools

// The imports below keep in go.mod the modules that Beam's suites, built by
// the conformance driver, need.

package conformance

import (
	_ "cloud.google.com/go/storage"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/direct"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/prism"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/batch"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/filter"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/periodic"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/top"
	_ "github.com/apache/beam/sdks/v2/go/test/integration/primitives"
	_ "github.com/apache/beam/sdks/v2/go/test/integration/synthetic"
	_ "github.com/apache/beam/sdks/v2/go/test/integration/wordcount"
	_ "github.com/apache/beam/sdks/v2/go/test/load"
	_ "github.com/apache/beam/sdks/v2/go/test/regression"
	_ "github.com/cockroachdb/pebble/v2"
	_ "github.com/fsouza/fake-gcs-server/fakestorage"
	_ "github.com/prometheus/client_golang/prometheus"
)
