package engine

import (
	"runtime"
	"time"
)

// Limits are the engine's internal bounds. Each has a default that suits
// real jobs; tests set them small and at random, so that the path a limit
// takes when it is reached runs at thirty elements rather than first in a
// user's job at ten thousand. A zero field takes its default.
type Limits struct {
	// TimersPerFiring bounds the timers fired in one bundle (10,000).
	TimersPerFiring int
	// BundleBytes is how much input makes a full bundle of a stateless
	// stage (4 MiB), StatefulBundleBytes of a stateful one (512 KiB: every
	// input element becomes state reads and writes held in one Pebble
	// batch until the bundle commits).
	BundleBytes, StatefulBundleBytes int
	// BundleOutputBytes ends a splittable bundle once its output reaches
	// it (4 MiB): a bundle's output is held in memory until it ends.
	BundleOutputBytes int
	// MessageBytes bounds the data of one message between subtasks
	// (1 MiB).
	MessageBytes int
	// InboxSize is how many messages a subtask's inbox holds (16).
	InboxSize int
	// StateChunkBytes bounds the data of one state response; larger values
	// continue with a continuation token (2 MiB).
	StateChunkBytes int
	// SplitCheck is how often a running splittable bundle is looked at
	// (20 ms); BundleTime is how long it runs before it is checkpointed
	// (split at fraction 0) so its output flows on (500 ms).
	SplitCheck, BundleTime time.Duration
	// FinalizeTimeout is how long the finalizations of bundles whose
	// effects are final may go on once the run has failed or been
	// cancelled (30 s): they run to their end rather than be left to the
	// worker after the job has returned.
	FinalizeTimeout time.Duration
	// RestoreWorkers bounds the subtasks that restore their state at once
	// when a run starts (twice GOMAXPROCS: a restore also waits on reads
	// and writes): each copies its checkpoint's files or imports its key
	// groups of a savepoint on its own.
	RestoreWorkers int
	// SavepointFileKeyGroups bounds the key groups of one keyed data file
	// of a savepoint (the max parallelism / 32, at least 1): a restore
	// reads the files of its subtasks' key groups, and at a parallelism up
	// to 32 reads no file in more than two subtasks.
	SavepointFileKeyGroups int
	// ImportRunBytes bounds the user state and timers a subtask that
	// restores a savepoint gathers in memory before it writes them out as
	// one sorted sstable (64 MiB, state.DefaultLoadRunBytes).
	ImportRunBytes int
}

// savepointFileKeyGroups is Limits.SavepointFileKeyGroups, or its default
// for the job's max parallelism.
func (e *Engine) savepointFileKeyGroups() int {
	if n := e.o.Limits.SavepointFileKeyGroups; n > 0 {
		return n
	}
	return max(1, e.o.MaxParallelism/32)
}

// DefaultLimits are the limits a zero Limits field takes.
var DefaultLimits = Limits{
	TimersPerFiring:     10000,
	BundleBytes:         4 << 20,
	StatefulBundleBytes: 512 << 10,
	BundleOutputBytes:   4 << 20,
	MessageBytes:        1 << 20,
	InboxSize:           16,
	StateChunkBytes:     2 << 20,
	SplitCheck:          20 * time.Millisecond,
	BundleTime:          500 * time.Millisecond,
	FinalizeTimeout:     30 * time.Second,
}

// withDefaults returns l with every zero field set to its default.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	def := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	def(&l.TimersPerFiring, d.TimersPerFiring)
	def(&l.BundleBytes, d.BundleBytes)
	def(&l.StatefulBundleBytes, d.StatefulBundleBytes)
	def(&l.BundleOutputBytes, d.BundleOutputBytes)
	def(&l.MessageBytes, d.MessageBytes)
	def(&l.InboxSize, d.InboxSize)
	def(&l.StateChunkBytes, d.StateChunkBytes)
	def(&l.RestoreWorkers, 2*runtime.GOMAXPROCS(0))
	if l.SplitCheck <= 0 {
		l.SplitCheck = d.SplitCheck
	}
	if l.BundleTime <= 0 {
		l.BundleTime = d.BundleTime
	}
	if l.FinalizeTimeout <= 0 {
		l.FinalizeTimeout = d.FinalizeTimeout
	}
	return l
}
