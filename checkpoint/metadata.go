package checkpoint

import (
	"cmp"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/internal/sealed"
)

// FormatVersion is the version of the metadata format this build writes and
// the newest it reads. Bump it for any change to the encoding or to the
// meaning of a field; Decode refuses newer versions.
const FormatVersion = 3 // 2: subtask "finished" and checkpoint "stats"; 3: checkpoint "metrics"

// formatName is the "format" field of every metadata file.
const formatName = "weir-checkpoint"

// maxParallelismLimit bounds MaxParallelism (key groups are 15-bit in Flink
// too); it keeps a corrupt value from sizing anything.
const maxParallelismLimit = 1 << 15

var (
	// ErrCorrupt is wrapped by errors about damaged data: a truncated or
	// malformed metadata file, a checksum mismatch, a downloaded file whose
	// size or SHA-256 is not the recorded one.
	ErrCorrupt = errors.New("corrupt")
	// ErrForeign is wrapped when metadata belongs to another job or to
	// another checkpoint than the object it was read from.
	ErrForeign = errors.New("belongs to another job or checkpoint")
	// ErrNewerFormat is wrapped when metadata was written by a newer weir
	// (format version above FormatVersion).
	ErrNewerFormat = errors.New("written by a newer weir")
)

// Metadata describes one completed checkpoint of a job: everything needed to
// restore every subtask. It is the content of <job>/chk-N/_metadata.
type Metadata struct {
	JobID          string    `json:"job_id"`
	CheckpointID   int64     `json:"checkpoint_id"`
	MaxParallelism int       `json:"max_parallelism"`
	Created        time.Time `json:"created"`
	// TransformNames maps the transform IDs used in state keys to Beam
	// unique names, so savepoints can translate (see DESIGN "Savepoints").
	TransformNames map[string]string `json:"transform_names"`
	Subtasks       []SubtaskState    `json:"subtasks"`
	// Stats are figures of how the checkpoint was taken, measured up to
	// the commit (optional; for listings).
	Stats *Stats `json:"stats,omitempty"`
	// Metrics are the job's user metrics when the checkpoint was committed
	// (optional: checkpoints of weir before format version 3 have none). A
	// job restored from the checkpoint starts its aggregates from them.
	Metrics *Metrics `json:"metrics,omitempty"`
}

// Metrics are a job's aggregated user metrics.
type Metrics struct {
	// Committed aggregates the bundles whose effects the checkpoint holds.
	Committed []Metric `json:"committed,omitempty"`
	// Attempted aggregates every successful bundle attempt of the job up
	// to the commit, bundles replayed after restores included.
	Attempted []Metric `json:"attempted,omitempty"`
}

// Metric is one aggregated user metric: a Beam MonitoringInfo with its
// payload decoded.
type Metric struct {
	URN    string            `json:"urn"`
	Type   string            `json:"type"` // e.g. beam:metrics:sum_int64:v1
	Labels map[string]string `json:"labels,omitempty"`
	// Values are the integers of the type's encoding, in order: a sum; a
	// distribution's count, sum, min and max; a gauge's timestamp
	// (milliseconds) and value.
	Values []int64 `json:"values"`
}

// Stats describe how a checkpoint was taken.
type Stats struct {
	DurationMS    int64 `json:"duration_ms"`    // from trigger to commit
	AlignmentMS   int64 `json:"alignment_ms"`   // the longest barrier alignment of a subtask
	UploadedBytes int64 `json:"uploaded_bytes"` // written to storage for this checkpoint
}

// FullSize is the size of every file the checkpoint references.
func (m *Metadata) FullSize() int64 {
	var n int64
	for _, s := range m.Subtasks {
		for _, f := range s.Files {
			n += f.Size
		}
	}
	return n
}

// SubtaskID names one subtask of a stage.
type SubtaskID struct {
	Stage   string `json:"stage"`
	Subtask int    `json:"subtask"`
}

func (id SubtaskID) String() string { return fmt.Sprintf("%s/%d", id.Stage, id.Subtask) }

// KeyGroupRange is the half-open range [Start, End) of key groups a subtask
// owns (state.KeyGroupRange).
type KeyGroupRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// SubtaskState is one subtask's part of a checkpoint.
type SubtaskState struct {
	SubtaskID
	KeyGroups KeyGroupRange `json:"key_groups"`
	// Files are the files of the subtask's Pebble checkpoint, restored
	// under their local names. Empty for a subtask without a DB.
	Files []File `json:"files"`
	// SourcePosition is opaque to this package: the engine's own state of
	// the subtask (a source's residual restrictions, input it had not run
	// yet, side inputs, watermarks).
	SourcePosition []byte `json:"source_position,omitempty"`
	// Finished says the subtask had ended before the checkpoint: restored,
	// it only ends its outputs again.
	Finished bool `json:"finished,omitempty"`
}

// File is one file of a subtask's Pebble checkpoint.
type File struct {
	Local  string `json:"local"`  // name in the Pebble directory, e.g. 000012.sst
	Remote string `json:"remote"` // object name relative to <job>/, e.g. shared/<sha256>.sst
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
}

// Subtask returns the state of subtask id, or nil.
func (m *Metadata) Subtask(id SubtaskID) *SubtaskState {
	for i := range m.Subtasks {
		if m.Subtasks[i].SubtaskID == id {
			return &m.Subtasks[i]
		}
	}
	return nil
}

// wire is the encoded form: the metadata plus format name and version.
type wire struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Metadata
}

// Encode validates m and returns its encoding: one line of JSON (subtasks
// and files in a canonical order) followed by a trailer line holding the
// SHA-256 of the JSON line, so truncation and corruption are detected.
func Encode(m *Metadata) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("checkpoint: encode metadata of checkpoint %d of job %q: %w", m.CheckpointID, m.JobID, err)
	}
	w := wire{Format: formatName, Version: FormatVersion, Metadata: *m}
	w.Subtasks = slices.Clone(m.Subtasks)
	slices.SortFunc(w.Subtasks, func(a, b SubtaskState) int {
		return cmp.Or(strings.Compare(a.Stage, b.Stage), cmp.Compare(a.Subtask, b.Subtask))
	})
	for i := range w.Subtasks {
		w.Subtasks[i].Files = slices.Clone(w.Subtasks[i].Files)
		slices.SortFunc(w.Subtasks[i].Files, func(a, b File) int { return strings.Compare(a.Local, b.Local) })
	}
	if m.Metrics != nil {
		w.Metrics = &Metrics{Committed: sortedMetrics(m.Metrics.Committed), Attempted: sortedMetrics(m.Metrics.Attempted)}
	}
	body, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode metadata of checkpoint %d of job %q: %w", m.CheckpointID, m.JobID, err)
	}
	return seal(body), nil
}

// sortedMetrics returns ms in a canonical order: by URN, then labels.
func sortedMetrics(ms []Metric) []Metric {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Metric) int { return strings.Compare(a.key(), b.key()) })
	return ms
}

// key identifies a metric: its URN and labels.
func (m Metric) key() string {
	keys := make([]string, 0, len(m.Labels))
	for k := range m.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(m.URN)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + m.Labels[k])
	}
	return b.String()
}

// seal and unseal are sealed.Seal and sealed.Unseal (internal/sealed).
var (
	seal   = sealed.Seal
	unseal = sealed.Unseal
)

// Decode parses metadata read from object (named in every error). It refuses
// truncated or corrupt data (ErrCorrupt), a newer format (ErrNewerFormat) and,
// if wantJob is not empty, metadata of another job (ErrForeign).
func Decode(object string, data []byte, wantJob string) (*Metadata, error) {
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("checkpoint: metadata %s: %w: %s", object, sentinel, fmt.Sprintf(format, args...))
	}
	var w wire
	if _, e := sealed.Decode(data, formatName, FormatVersion, &w); e != nil {
		sentinel := ErrCorrupt
		if e.Problem == sealed.Newer {
			sentinel = ErrNewerFormat
		}
		return nil, fail(sentinel, "%s", e.Msg)
	}
	m := &w.Metadata
	if err := m.validate(); err != nil {
		return nil, fail(ErrCorrupt, "%v", err)
	}
	if wantJob != "" && m.JobID != wantJob {
		return nil, fail(ErrForeign, "job %q, want %q", m.JobID, wantJob)
	}
	return m, nil
}

// validate checks the invariants restore and garbage collection rely on, in
// particular that no file name can escape its directory.
func (m *Metadata) validate() error {
	if err := checkJobID(m.JobID); err != nil {
		return err
	}
	if m.CheckpointID < 1 {
		return fmt.Errorf("checkpoint ID %d < 1", m.CheckpointID)
	}
	if m.MaxParallelism < 1 || m.MaxParallelism > maxParallelismLimit {
		return fmt.Errorf("max parallelism %d outside [1, %d]", m.MaxParallelism, maxParallelismLimit)
	}
	for id := range m.TransformNames {
		if id == "" {
			return errors.New("empty transform ID in the transform name map")
		}
	}
	own := privatePrefix(m.CheckpointID)
	seen := make(map[SubtaskID]bool, len(m.Subtasks))
	ranges := map[string][]KeyGroupRange{}
	for _, s := range m.Subtasks {
		if s.Stage == "" || s.Subtask < 0 {
			return fmt.Errorf("invalid subtask %q", s.SubtaskID)
		}
		if seen[s.SubtaskID] {
			return fmt.Errorf("subtask %s listed twice", s.SubtaskID)
		}
		seen[s.SubtaskID] = true
		kg := s.KeyGroups
		if kg.Start < 0 || kg.Start > kg.End || kg.End > m.MaxParallelism {
			return fmt.Errorf("subtask %s: key groups [%d, %d) outside [0, %d)", s.SubtaskID, kg.Start, kg.End, m.MaxParallelism)
		}
		if kg.Start < kg.End {
			ranges[s.Stage] = append(ranges[s.Stage], kg)
		}
		locals := make(map[string]bool, len(s.Files))
		for _, f := range s.Files {
			if err := checkLocalName(f.Local); err != nil {
				return fmt.Errorf("subtask %s: %w", s.SubtaskID, err)
			}
			if locals[f.Local] {
				return fmt.Errorf("subtask %s: file %q listed twice", s.SubtaskID, f.Local)
			}
			locals[f.Local] = true
			if err := storage.CheckName(f.Remote); err != nil {
				return fmt.Errorf("subtask %s: file %s: %w", s.SubtaskID, f.Local, err)
			}
			if !strings.HasPrefix(f.Remote, sharedDir) && !strings.HasPrefix(f.Remote, own) {
				return fmt.Errorf("subtask %s: file %s: remote %q is neither under %s nor under %s", s.SubtaskID, f.Local, f.Remote, sharedDir, own)
			}
			if f.Size < 0 {
				return fmt.Errorf("subtask %s: file %s: negative size %d", s.SubtaskID, f.Local, f.Size)
			}
			if !isSHA256Hex(f.SHA256) {
				return fmt.Errorf("subtask %s: file %s: sha256 %q is not 64 lowercase hex digits", s.SubtaskID, f.Local, f.SHA256)
			}
		}
	}
	if m.Metrics != nil {
		for _, ms := range [][]Metric{m.Metrics.Committed, m.Metrics.Attempted} {
			seen := make(map[string]bool, len(ms))
			for _, x := range ms {
				if x.URN == "" || x.Type == "" || len(x.Values) == 0 {
					return fmt.Errorf("metric %q of type %q with %d values: wants a URN, a type and values", x.URN, x.Type, len(x.Values))
				}
				k := x.key()
				if seen[k] {
					return fmt.Errorf("metric %q %v listed twice", x.URN, x.Labels)
				}
				seen[k] = true
			}
		}
	}
	for stage, rs := range ranges {
		slices.SortFunc(rs, func(a, b KeyGroupRange) int { return cmp.Compare(a.Start, b.Start) })
		for i := 1; i < len(rs); i++ {
			if rs[i].Start < rs[i-1].End {
				return fmt.Errorf("stage %s: key-group ranges [%d, %d) and [%d, %d) overlap", stage, rs[i-1].Start, rs[i-1].End, rs[i].Start, rs[i].End)
			}
		}
	}
	return nil
}

// checkJobID accepts job IDs usable as one path component of an object name.
func checkJobID(job string) error {
	if err := storage.CheckName(job); err != nil || strings.Contains(job, "/") {
		return fmt.Errorf("job ID %q is not a valid single object name component", job)
	}
	return nil
}

// checkLocalName accepts names of files directly in a Pebble directory.
func checkLocalName(name string) error {
	if err := storage.CheckName(name); err != nil || strings.Contains(name, "/") {
		return fmt.Errorf("local file name %q is not a plain file name", name)
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
