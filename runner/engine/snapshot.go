package engine

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/weir-runner/weir/checkpoint"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// taskState is a subtask's engine state in a checkpoint, beside its Pebble
// state: what it holds in memory. For a splittable stage, Pending and
// Delayed are the source's position: its residual restrictions.
type taskState struct {
	Pending [][]byte `json:"pending,omitempty"` // input not run yet
	// PendingFile names the file of the subtask's checkpoint directory
	// that holds its pending input instead (when it has a state DB).
	PendingFile string         `json:"pending_file,omitempty"`
	Delayed     []delayedState `json:"delayed,omitempty"` // deferred residuals
	Sides       [][][]byte     `json:"sides,omitempty"`   // side inputs as received (read from older checkpoints only: they live in Pebble now)
	InWM        int64          `json:"in_wm,omitempty"`   // input watermark acted on
	Fired       int64          `json:"fired,omitempty"`   // GroupByKey: windows fired up to
	Dropped     int64          `json:"dropped,omitempty"` // late or expired input dropped
}

type delayedState struct {
	Data    []byte `json:"data"`
	WM      int64  `json:"wm"`
	DelayMS int64  `json:"delay_ms"` // resume this long after restore
}

// decodeTaskState reads a subtask's engine state from a checkpoint.
func decodeTaskState(b []byte) (*taskState, error) {
	st := &taskState{InWM: wire.MinTimestamp, Fired: wire.MinTimestamp}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("decoding subtask state: %w", err)
	}
	return st, nil
}

// ckID names the subtask in checkpoints.
func (s *subtask) ckID() checkpoint.SubtaskID {
	return checkpoint.SubtaskID{Stage: s.stage.ID, Subtask: s.index}
}

// restored is the subtask's part of the checkpoint the job restores
// from (nil on a fresh start).
func (s *subtask) restored() *checkpoint.SubtaskState {
	if s.e.ck == nil || s.e.ck.o.Restore == nil {
		return nil
	}
	return s.e.ck.o.Restore.Subtask(s.ckID())
}

// snapshot takes the subtask's part of checkpoint chk at a barrier: the
// synchronous Pebble checkpoint of db (nil if it has none) and its engine
// state; then it forwards the barrier. The upload runs in the background.
func (s *subtask) snapshot(ctx context.Context, chk int64, db *state.DB, st *taskState, fin []finalization) error {
	c := s.e.ck
	if err := c.fault(FaultSnapshot, chk); err != nil {
		return fmt.Errorf("%s: snapshot for checkpoint %d: %w", s.name(), chk, err)
	}
	dir := ""
	if db != nil {
		dir = filepath.Join(s.e.ckDir, fmt.Sprintf("%d-%s-%d", chk, s.stage.ID, s.index))
		if err := db.Checkpoint(dir); err != nil {
			return fmt.Errorf("%s: checkpoint %d: %w", s.name(), chk, err)
		}
		if len(st.Pending) > 0 {
			// Input the barrier overtook can be tens of MB: a file of
			// the upload, not base64 in the metadata.
			if err := writePending(filepath.Join(dir, pendingFile), st.Pending); err != nil {
				return fmt.Errorf("%s: checkpoint %d: %w", s.name(), chk, err)
			}
			cp := *st
			cp.Pending, cp.PendingFile = nil, pendingFile
			st = &cp
		}
	}
	blob, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("%s: encoding state for checkpoint %d: %w", s.name(), chk, err)
	}
	s.snapped = chk
	c.snapshot(chk, s.ckID(), blob, dir, fin)
	return s.out.barrier(ctx, chk)
}

// openState opens a stateful subtask's Pebble DB in dir, first restoring
// it from the checkpoint the job starts from, if any. cells: the DB holds
// user state and no GroupBuffer (state.Options.Cells).
func (s *subtask) openState(ctx context.Context, dir string, cache *state.Cache, cells bool) (*state.DB, error) {
	r := s.restored()
	if r == nil && s.e.runSP != nil && s.e.runSP.native != nil {
		return s.e.runSP.openNative(ctx, s, dir, state.Options{Cache: cache, Cells: cells})
	}
	if r == nil || len(r.Files) == 0 {
		db, err := state.Open(state.Options{Dir: dir, Cache: cache, Cells: cells})
		if err == nil && r == nil && s.e.runSP != nil {
			if err = s.e.runSP.importInto(ctx, s, db); err != nil {
				db.Close()
				return nil, fmt.Errorf("restoring the savepoint: %w", err)
			}
		}
		return db, err
	}
	c := s.e.ck
	if err := checkpoint.Restore(ctx, c.o.Storage, c.o.Restore, s.ckID(), dir); err != nil {
		return nil, err
	}
	return state.Open(state.Options{Dir: dir, Cache: cache, MustExist: true, Cells: cells})
}

// delayedStates are deferred residuals as a snapshot keeps them.
func delayedStates(rs []residual, now time.Time) []delayedState {
	var out []delayedState
	for _, r := range rs {
		out = append(out, delayedState{Data: r.data, WM: r.wm, DelayMS: max(r.readyAt.Sub(now).Milliseconds(), 0)})
	}
	return out
}

// finishedTask stands for a subtask that had ended before the checkpoint
// the job restored from: it ends its outputs again and nothing more.
type finishedTask struct{ subtask }

func (t *finishedTask) run(ctx context.Context) error {
	for !t.allDone() { // its senders had ended too: they only end again
		m, err := t.recv(ctx)
		if err != nil {
			return err
		}
		t.ports[m.port].observe(m)
	}
	return t.out.control(ctx, msgEOI, wire.MaxTimestamp)
}

// pendingFile holds, in a stateful subtask's checkpoint directory, the
// input it had taken in but not run: each chunk as a uvarint length and
// its bytes.
const pendingFile = "weir-pending-input"

func writePending(path string, chunks [][]byte) error {
	var b []byte
	for _, c := range chunks {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing pending input: %w", err)
	}
	return nil
}

// decodePending reads the chunks writePending wrote.
func decodePending(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, fmt.Errorf("malformed pending input: chunk %d has a bad length", len(out))
		}
		out = append(out, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return out, nil
}

// readPending reads the pending input file a restored subtask's state
// directory holds, and removes it (the DB does not need it).
func readPending(dir, name string) ([][]byte, error) {
	if name != pendingFile {
		return nil, fmt.Errorf("checkpoint names pending input file %q; want %q", name, pendingFile)
	}
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading pending input: %w", err)
	}
	chunks, err := decodePending(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("removing %s: %w", path, err)
	}
	return chunks, nil
}
