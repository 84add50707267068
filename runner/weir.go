package runner

import (
	"context"
	"fmt"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal"
)

func init() {
	beam.RegisterRunner("weir", Execute)
}

var (
	embeddedOnce sync.Once
	embedded     *Server
	embeddedErr  error
)

// Execute runs p on weir. Without --endpoint it starts weir in this
// process (once, shared by every pipeline the process runs) and defaults
// the environment to LOOPBACK, so the SDK harness runs here too.
func Execute(ctx context.Context, p *beam.Pipeline) (beam.PipelineResult, error) {
	if *jobopts.Endpoint == "" {
		embeddedOnce.Do(func() { embedded, embeddedErr = Start(Config{}) })
		if embeddedErr != nil {
			return nil, fmt.Errorf("starting embedded weir: %w", embeddedErr)
		}
		*jobopts.Endpoint = embedded.Endpoint()
		if *jobopts.EnvironmentType == "" {
			*jobopts.EnvironmentType = "loopback"
		}
	}
	return universal.Execute(ctx, p)
}
