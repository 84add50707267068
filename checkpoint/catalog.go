package checkpoint

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// ErrNoCheckpoint is wrapped by Latest when a job has no usable checkpoint.
var ErrNoCheckpoint = errors.New("no completed checkpoint")

// maxMetadataBytes bounds what is read as metadata, so a wrong object cannot
// exhaust memory.
const maxMetadataBytes = 1 << 30

// Commit makes checkpoint meta complete by writing its metadata with a
// create-only write: the atomic point after which Latest can return it. If
// the metadata exists with exactly these bytes (a retried commit whose first
// attempt succeeded) Commit succeeds; with other bytes it fails with an error
// wrapping storage.ErrExists.
func Commit(ctx context.Context, st storage.Storage, meta *Metadata) error {
	data, err := Encode(meta)
	if err != nil {
		return err
	}
	name := MetadataName(meta.JobID, meta.CheckpointID)
	err = st.PutIfAbsent(ctx, name, data)
	if !errors.Is(err, storage.ErrExists) {
		if err != nil {
			return fmt.Errorf("checkpoint: commit %s: %w", name, err)
		}
		return nil
	}
	existing, rerr := readObject(ctx, st, name)
	if rerr == nil && bytes.Equal(existing, data) {
		return nil
	}
	return fmt.Errorf("checkpoint: commit %s: checkpoint %d was already committed with other content: %w", name, meta.CheckpointID, err)
}

// knownMetadata is the metadata of checkpoint id of job among known, or nil.
func knownMetadata(known []*Metadata, job string, id int64) *Metadata {
	for _, m := range known {
		if m != nil && m.JobID == job && m.CheckpointID == id {
			return m
		}
	}
	return nil
}

// ReadMetadata reads and decodes the metadata of checkpoint id of job. Besides
// Decode's checks it refuses metadata recording another checkpoint ID.
func ReadMetadata(ctx context.Context, st storage.Storage, job string, id int64) (*Metadata, error) {
	name := MetadataName(job, id)
	data, err := readObject(ctx, st, name)
	if err != nil {
		return nil, err
	}
	m, err := Decode(name, data, job)
	if err != nil {
		return nil, err
	}
	if m.CheckpointID != id {
		return nil, fmt.Errorf("checkpoint: metadata %s: %w: records checkpoint %d", name, ErrForeign, m.CheckpointID)
	}
	return m, nil
}

// Latest returns the newest usable completed checkpoint of job: the highest N
// whose chk-N/_metadata decodes and whose files all exist with their recorded
// sizes (contents are verified by Restore). Newer checkpoints passed over are
// described in skipped, one error per checkpoint naming the object that is
// wrong (nil if the newest was usable); the caller should log it. A checkpoint
// written by a newer weir, or an error reading storage, stops the search
// instead of falling back. If nothing is usable, err wraps ErrNoCheckpoint.
func Latest(ctx context.Context, st storage.Storage, job string) (meta *Metadata, skipped error, err error) {
	return LatestUsable(ctx, st, job, nil)
}

// LatestUsable is Latest passing over the checkpoints in bad as well
// (found unusable by a restore that read their files: a damaged file of
// the right size), each reported in skipped with its reason.
func LatestUsable(ctx context.Context, st storage.Storage, job string, bad map[int64]error) (meta *Metadata, skipped error, err error) {
	if err := checkJobID(job); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: latest: %w", err)
	}
	l, err := listCheckpoints(ctx, st, job)
	if err != nil {
		return nil, nil, err
	}
	var reasons []error
	for _, id := range l.completed() {
		if why := bad[id]; why != nil {
			reasons = append(reasons, fmt.Errorf("checkpoint %d skipped: %w", id, why))
			continue
		}
		m, err := ReadMetadata(ctx, st, job, id)
		if err == nil {
			err = checkFilesExist(ctx, st, m)
		}
		if err == nil {
			return m, errors.Join(reasons...), nil
		}
		if !isUnusable(err) {
			return nil, errors.Join(reasons...), fmt.Errorf("checkpoint: latest of job %s: checkpoint %d: %w", job, id, err)
		}
		reasons = append(reasons, fmt.Errorf("checkpoint %d skipped: %w", id, err))
	}
	skipped = errors.Join(reasons...)
	if skipped != nil {
		return nil, skipped, fmt.Errorf("checkpoint: job %s in %s: %w (%d unusable: %v)", job, st, ErrNoCheckpoint, len(reasons), skipped)
	}
	return nil, nil, fmt.Errorf("checkpoint: job %s in %s: %w", job, st, ErrNoCheckpoint)
}

// Unusable reports whether err condemns a checkpoint (a damaged, foreign
// or missing file) rather than being a failure to look at it.
func Unusable(err error) bool { return isUnusable(err) }

// isUnusable reports whether err condemns a checkpoint (rather than being a
// failure to look at it).
func isUnusable(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, ErrForeign) || errors.Is(err, storage.ErrNotFound)
}

// checkFilesExist stats every object m references.
func checkFilesExist(ctx context.Context, st storage.Storage, m *Metadata) error {
	type ref struct {
		sub  SubtaskID
		file File
	}
	var refs []ref
	seen := map[string]bool{}
	for _, s := range m.Subtasks {
		for _, f := range s.Files {
			if !seen[f.Remote] {
				seen[f.Remote] = true
				refs = append(refs, ref{s.SubtaskID, f})
			}
		}
	}
	return forEach(ctx, len(refs), defaultConcurrency, func(ctx context.Context, i int) error {
		r := refs[i]
		object := m.JobID + "/" + r.file.Remote
		size, err := st.Stat(ctx, object)
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("file %s of subtask %s: object %s is missing: %w", r.file.Local, r.sub, object, err)
		}
		if err != nil {
			return err
		}
		if size != r.file.Size {
			return fmt.Errorf("file %s of subtask %s: object %s %w: %d bytes, metadata says %d", r.file.Local, r.sub, object, ErrCorrupt, size, r.file.Size)
		}
		return nil
	})
}

// listing is what a job has under chk-.
type listing struct {
	objects  map[int64][]string // object names by checkpoint ID
	complete map[int64]bool     // has chk-N/_metadata
	intents  map[int64][]string // chk-N/<subtask>/_files names
}

// completed returns the IDs of complete checkpoints, newest first.
func (l *listing) completed() []int64 {
	var ids []int64
	for id := range l.complete {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids
}

func listCheckpoints(ctx context.Context, st storage.Storage, job string) (*listing, error) {
	names, err := st.List(ctx, job+"/"+chkPrefix)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: list checkpoints of job %s: %w", job, err)
	}
	l := &listing{objects: map[int64][]string{}, complete: map[int64]bool{}, intents: map[int64][]string{}}
	for _, n := range names {
		id, rest, ok := parseCheckpointObject(job, n)
		if !ok {
			continue
		}
		l.objects[id] = append(l.objects[id], n)
		if rest == metadataBase {
			l.complete[id] = true
		} else if dir, base, ok := strings.Cut(rest, "/"); ok && dir != "" && base == intentBase {
			l.intents[id] = append(l.intents[id], n)
		}
	}
	return l, nil
}

// RetainResult is what Retain did.
type RetainResult struct {
	Retained           []int64 // newest first
	DeletedCheckpoints []int64
	DeletedShared      int
	// Unreadable lists the completed checkpoints whose metadata was corrupt
	// or foreign; they were deleted.
	Unreadable []error
}

// Retain keeps the newest keep completed checkpoints of job whose metadata
// is readable and deletes the rest: older checkpoints (complete or not),
// newer ones whose metadata is corrupt, and every shared object that neither
// a retained checkpoint nor the intent of an unfinished newer checkpoint
// references. Nothing is deleted when no checkpoint is readable, nor when a
// storage error or a newer format leaves the references unknown.
//
// Uploads of newer checkpoints may run concurrently. Their new objects are
// safe: Retain lists shared/ before the intents, an upload writes its intent
// before its objects, and every upload creates names that did not exist
// before (sharedName), so an object either appears after the listing (not a
// candidate) or its intent is seen. The objects an upload reuses are those of
// the checkpoint its Uploader last heard of (NewUploader, Committed), so call
// Committed on every uploader after a commit and before the Retain that
// follows it: then the checkpoint uploaders know is always a retained one.
//
// known are metadata the caller has in hand (those it committed itself):
// they are not read back from storage.
func Retain(ctx context.Context, st storage.Storage, job string, keep int, known ...*Metadata) (*RetainResult, error) {
	fail := func(err error) (*RetainResult, error) {
		return nil, fmt.Errorf("checkpoint: retain %d checkpoints of job %s in %s: %w", keep, job, st, err)
	}
	if keep < 1 {
		return fail(errors.New("keep must be at least 1"))
	}
	if err := checkJobID(job); err != nil {
		return fail(err)
	}
	// Shared objects first, intents after: an object uploaded after this
	// listing is not a candidate, one uploaded before has its intent visible
	// to the listing below (intents are written before uploads).
	shared, err := st.List(ctx, job+"/"+sharedDir)
	if err != nil {
		return fail(err)
	}
	l, err := listCheckpoints(ctx, st, job)
	if err != nil {
		return fail(err)
	}
	res := &RetainResult{}
	refs := map[string]bool{}
	retained := map[int64]bool{}
	for _, id := range l.completed() {
		if len(res.Retained) == keep {
			break // older ones go, whatever they hold
		}
		m := knownMetadata(known, job, id)
		if m == nil {
			var err error
			m, err = ReadMetadata(ctx, st, job, id)
			if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrForeign) {
				res.Unreadable = append(res.Unreadable, err)
				continue
			}
			if err != nil {
				return fail(err)
			}
		}
		res.Retained = append(res.Retained, id)
		retained[id] = true
		for _, s := range m.Subtasks {
			for _, f := range s.Files {
				refs[job+"/"+f.Remote] = true
			}
		}
	}
	if len(res.Retained) == 0 {
		return res, nil
	}
	newest := res.Retained[0]
	protectAll := false
	for id, names := range l.intents {
		if id <= newest || l.complete[id] {
			continue // only unfinished newer checkpoints protect objects
		}
		for _, n := range names {
			files, err := readIntent(ctx, st, n)
			if errors.Is(err, storage.ErrNotFound) {
				continue // its checkpoint is being deleted
			}
			if err != nil {
				// Unknown references: keep every shared object this time;
				// the checkpoint is deleted once a newer one is retained.
				res.Unreadable = append(res.Unreadable, err)
				protectAll = true
				continue
			}
			for _, f := range files {
				refs[job+"/"+f.Remote] = true
			}
		}
	}

	// Checkpoints first, each _metadata before its other objects, so that
	// an interrupted Retain never leaves a complete-looking checkpoint with
	// missing files.
	var doomed []int64
	for id := range l.objects {
		if retained[id] || (id > newest && !l.complete[id]) {
			continue // retained, or unfinished and newer
		}
		doomed = append(doomed, id)
	}
	slices.Sort(doomed)
	for _, id := range doomed {
		names := slices.Clone(l.objects[id])
		slices.SortStableFunc(names, func(a, b string) int {
			return compareBool(!isMetadataObject(a), !isMetadataObject(b))
		})
		if err := st.Delete(ctx, names[0]); err != nil {
			return fail(err)
		}
		if err := deleteAll(ctx, st, names[1:]); err != nil {
			return fail(err)
		}
		res.DeletedCheckpoints = append(res.DeletedCheckpoints, id)
	}
	if protectAll {
		return res, nil
	}
	var garbage []string
	for _, n := range shared {
		if !refs[n] {
			garbage = append(garbage, n)
		}
	}
	if err := deleteAll(ctx, st, garbage); err != nil {
		return fail(err)
	}
	res.DeletedShared = len(garbage)
	return res, nil
}

func isMetadataObject(name string) bool { return strings.HasSuffix(name, "/"+metadataBase) }

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func deleteAll(ctx context.Context, st storage.Storage, names []string) error {
	return forEach(ctx, len(names), defaultConcurrency, func(ctx context.Context, i int) error {
		return st.Delete(ctx, names[i])
	})
}

// readObject reads a whole (small) object.
func readObject(ctx context.Context, st storage.Storage, name string) ([]byte, error) {
	r, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxMetadataBytes+1))
	if err != nil {
		return nil, fmt.Errorf("checkpoint: read %s: %w", name, err)
	}
	if len(data) > maxMetadataBytes {
		return nil, fmt.Errorf("checkpoint: read %s: %w: larger than %d bytes", name, ErrCorrupt, maxMetadataBytes)
	}
	return data, nil
}

// NextID returns the ID a new checkpoint of job should take: one above every
// checkpoint ID with any object in storage, complete or not, so that a new
// checkpoint never writes into the remains of an earlier incarnation's.
func NextID(ctx context.Context, st storage.Storage, job string) (int64, error) {
	if err := checkJobID(job); err != nil {
		return 0, fmt.Errorf("checkpoint: next ID: %w", err)
	}
	l, err := listCheckpoints(ctx, st, job)
	if err != nil {
		return 0, err
	}
	next := int64(1)
	for id := range l.objects {
		next = max(next, id+1)
	}
	return next, nil
}

// Discard deletes what an aborted checkpoint id of job wrote under chk-id/.
// It refuses a completed checkpoint (one with _metadata): those go only
// through Retain. Shared objects the aborted upload created are left for
// Retain, which deletes what no retained checkpoint references.
func Discard(ctx context.Context, st storage.Storage, job string, id int64) error {
	if err := checkJobID(job); err != nil {
		return fmt.Errorf("checkpoint: discard: %w", err)
	}
	l, err := listCheckpoints(ctx, st, job)
	if err != nil {
		return err
	}
	if l.complete[id] {
		return fmt.Errorf("checkpoint: discard checkpoint %d of job %s: it is complete", id, job)
	}
	if err := deleteAll(ctx, st, l.objects[id]); err != nil {
		return fmt.Errorf("checkpoint: discard checkpoint %d of job %s: %w", id, job, err)
	}
	return nil
}

// List returns the readable completed checkpoints of job, newest first, and
// an error per completed checkpoint whose metadata could not be read.
func List(ctx context.Context, st storage.Storage, job string) ([]*Metadata, []error, error) {
	if err := checkJobID(job); err != nil {
		return nil, nil, fmt.Errorf("checkpoint: list: %w", err)
	}
	l, err := listCheckpoints(ctx, st, job)
	if err != nil {
		return nil, nil, err
	}
	var out []*Metadata
	var bad []error
	for _, id := range l.completed() {
		m, err := ReadMetadata(ctx, st, job, id)
		if isUnusable(err) || errors.Is(err, ErrNewerFormat) {
			bad = append(bad, err)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		out = append(out, m)
	}
	return out, bad, nil
}
