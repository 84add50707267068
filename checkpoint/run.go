package checkpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// A job's run record, <job>/_run, says which of the job's checkpoints belong
// to its current run and whether that run has finished. Checkpoints of a
// job outlive its runs (a finished job keeps its retained ones), so without
// it --resume could not tell a run to continue from one already complete:
//
//   - A run that starts fresh writes the record with First, the ID its first
//     checkpoint will take; checkpoints below First are of earlier runs, and
//     neither --resume nor a restart after a failure restores them.
//   - A run that ends successfully rewrites it with Finished set, while it
//     still holds the lease. A --resume of a finished run has nothing to do:
//     every result of it was committed, and replaying from its last
//     checkpoint would run its tail a second time.
//   - A run that fails, is cancelled or dies leaves it as it was: --resume
//     continues from the latest checkpoint at or above First.
//
// Jobs whose dir has no record (written before it existed) resume as
// before, from their latest checkpoint.

// RunFormat marks a run record; runVersion is its format version.
const (
	RunFormat  = "weir-run"
	runVersion = 1
	runBase    = "_run"
)

// RunName returns the object name of job's run record.
func RunName(job string) string { return job + "/" + runBase }

// Run is the content of a run record: one line of JSON.
type Run struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Job     string    `json:"job"`
	First   int64     `json:"first_checkpoint"` // the first checkpoint ID of this run
	Started time.Time `json:"started"`
	// Finished is set once the run ended successfully; Last is then its
	// latest completed checkpoint (0: none).
	Finished *time.Time `json:"finished,omitempty"`
	Last     int64      `json:"last_checkpoint,omitempty"`
}

// Mine reports whether checkpoint id belongs to this run.
func (r *Run) Mine(id int64) bool { return r == nil || id >= r.First }

// ReadRun returns job's run record, nil if it has none. A record that
// cannot be read as one is an error naming the object.
func ReadRun(ctx context.Context, st storage.Storage, job string) (*Run, error) {
	if err := checkJobID(job); err != nil {
		return nil, fmt.Errorf("checkpoint: run record: %w", err)
	}
	name := RunName(job)
	data, err := readObject(ctx, st, name)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint: reading the run record %s/%s: %w", st, name, err)
	}
	r, err := DecodeRun(data)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: the run record %s/%s: %w", st, name, err)
	}
	if r.Job != job {
		return nil, fmt.Errorf("checkpoint: the run record %s/%s: %w: it is job %q's", st, name, ErrForeign, r.Job)
	}
	return r, nil
}

// WriteRun replaces job's run record with r (Format, Version and Job set).
func WriteRun(ctx context.Context, st storage.Storage, job string, r Run) error {
	r.Format, r.Version, r.Job = RunFormat, runVersion, job
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("checkpoint: encoding the run record of job %s: %w", job, err)
	}
	if err := st.Put(ctx, RunName(job), bytes.NewReader(append(data, '\n'))); err != nil {
		return fmt.Errorf("checkpoint: writing the run record of job %s: %w", job, err)
	}
	return nil
}

// DecodeRun parses a run record, refusing foreign and newer ones.
func DecodeRun(data []byte) (*Run, error) {
	var r Run
	if err := json.Unmarshal(bytes.TrimSpace(data), &r); err != nil {
		return nil, fmt.Errorf("%w: not a weir run record: %w", ErrCorrupt, err)
	}
	switch {
	case r.Format != RunFormat:
		return nil, fmt.Errorf("%w: not a weir run record (format %q)", ErrCorrupt, r.Format)
	case r.Version > runVersion:
		return nil, fmt.Errorf("run record of format version %d, written by a newer weir (this one reads %d)", r.Version, runVersion)
	case r.First < 0 || r.Last < 0:
		return nil, fmt.Errorf("%w: run record with a negative checkpoint ID", ErrCorrupt)
	}
	return &r, nil
}
