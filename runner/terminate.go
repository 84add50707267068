package runner

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	jobpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/jobmanagement_v1"
	"github.com/weir-runner/weir/portability"
)

// StopOutcome is how one job's stop with savepoint went: the savepoint's
// URL, or why there is none (the job was then cancelled).
type StopOutcome struct {
	Job, Path string
	Err       error
}

// StopWithSavepoints stops every running job with a savepoint into its
// --savepoint_dir, all at once, as an orchestrator's SIGTERM asks before
// it moves the jobs: each job's sources stop at a position, its savepoint
// is taken, and it ends DONE. Where each savepoint went, or why a job has
// none, is logged; a job that cannot stop so is cancelled. It returns when
// every job has ended (or ctx has).
func (s *Server) StopWithSavepoints(ctx context.Context) []StopOutcome {
	var (
		mu  sync.Mutex
		out []StopOutcome
		wg  sync.WaitGroup
	)
	for _, j := range s.jobs.Jobs() {
		if j.State() != jobpb.JobState_RUNNING {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, err := j.StopWithSavepoint(ctx, portability.SavepointRequest{})
			if err != nil {
				s.log.Error("stop with savepoint failed: cancelling the job", "job", j.ID, "err", err)
				j.Cancel()
			} else {
				s.log.Warn("job stopped with savepoint", "job", j.ID, "savepoint", path)
			}
			j.Wait(ctx) // its run's records are written as it ends
			mu.Lock()
			out = append(out, StopOutcome{Job: j.ID, Path: path, Err: err})
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// StopOnSIGTERM makes the first SIGTERM the process gets stop every running
// job of s with a savepoint (StopWithSavepoints); a second one exits at
// once. It returns when ctx ends (its owner's life) or the stops are done.
func (s *Server) StopOnSIGTERM(ctx context.Context) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-ctx.Done():
		return
	case <-sig:
	}
	s.log.Warn("SIGTERM: stopping every running job with a savepoint (again to exit at once)")
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.StopWithSavepoints(ctx)
	}()
	select {
	case <-stopped:
	case <-sig:
		s.log.Error("second SIGTERM: exiting without waiting for the savepoints")
		os.Exit(143)
	case <-ctx.Done():
	}
}
