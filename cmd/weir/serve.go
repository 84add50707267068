package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/weir-runner/weir/runner"
)

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "address to bind")
	port := fs.Int("job_port", 8099, "port for the Job API, artifacts and Fn API (0 picks a free one)")
	par := fs.Int("parallelism", 0, "default subtasks per stage (0: number of CPUs); a job's --parallelism overrides it")
	endpointFile := fs.String("endpoint_file", "", "write host:port here once listening")
	tmp := fs.String("state_dir", "", "directory for job state (default: the system temp dir)")
	verbose := fs.Bool("v", false, "log at debug level")
	progress := fs.Duration("progress_every", 10*time.Second, "log each running job's progress (records, watermarks) this often; 0 never")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the server to this file until it stops")
	metricsAddr := fs.String("metrics_addr", "127.0.0.1:0", "serve Prometheus metrics at http://ADDR/metrics (empty: off)")
	ck := runner.DefaultCheckpointConfig()
	ck.Bind(fs) // defaults for jobs; a job's pipeline options override them
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("creating cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("starting cpu profile: %w", err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	s, err := runner.Start(runner.Config{
		Addr:          fmt.Sprintf("%s:%d", *host, *port),
		Parallelism:   *par,
		TempDir:       *tmp,
		Logger:        log,
		ProgressEvery: *progress,
		Checkpoints:   ck,
		MetricsAddr:   *metricsAddr,
	})
	if err != nil {
		return err
	}
	log.Info("weir serving", "endpoint", s.Endpoint(), "metrics", s.MetricsAddr())
	if *endpointFile != "" {
		tmpFile := *endpointFile + ".tmp"
		if err := os.WriteFile(tmpFile, []byte(s.Endpoint()), 0o644); err != nil {
			s.Stop()
			return fmt.Errorf("writing endpoint file: %w", err)
		}
		if err := os.Rename(tmpFile, *endpointFile); err != nil {
			s.Stop()
			return fmt.Errorf("writing endpoint file: %w", err)
		}
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	if got == syscall.SIGTERM {
		// What an orchestrator sends before it moves the server: every
		// running job stops with a savepoint into its --savepoint_dir
		// (a job without one is cancelled); a second signal stops at once.
		log.Info("SIGTERM: stopping every running job with a savepoint (a second signal stops at once)")
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-sig:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.StopWithSavepoints(ctx)
		cancel()
	}
	log.Info("stopping", "signal", got.String())
	s.Stop()
	return nil
}
