package runner

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners/universal"
)

func init() {
	beam.RegisterRunner("weir", Execute)
}

var fnAPI = flag.Bool("weir_fn_api", false, "with --runner=weir and no --endpoint: run the SDK harness over the Fn API's gRPC services (as a weir server does) instead of in this process through the Go SDK's exec package")

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
		embeddedOnce.Do(func() {
			embedded, embeddedErr = Start(Config{Logger: embeddedLogger(), InProcess: !*fnAPI})
			if embeddedErr == nil {
				// weir jobs, weir savepoint, weir stop… reach its jobs here.
				// Always said, whatever the log level.
				fmt.Fprintf(os.Stderr, "weir: embedded job server at %s (weir jobs --endpoint=%s)\n", embedded.Endpoint(), embedded.Endpoint())
				if f := flag.Lookup("savepoint_dir"); f != nil && f.Value.String() != "" {
					// SIGTERM stops the job with a savepoint; the server
					// (and so this watch) lives as long as the process.
					go embedded.StopOnSIGTERM(context.Background())
				}
			}
		})
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

// embeddedLogger logs the embedded server's messages to stderr at the level
// in $WEIR_LOG_LEVEL (debug, info, warn (default), error).
func embeddedLogger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(os.Getenv("WEIR_LOG_LEVEL"))); err != nil || os.Getenv("WEIR_LOG_LEVEL") == "" {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
