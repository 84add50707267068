package savepoint

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/weir-runner/weir/internal/sealed"
)

// FormatVersion is the version of the savepoint format (metadata and data
// files) this build writes and the newest it reads. Bump it for any change
// to an encoding or to the meaning of a field; readers refuse newer versions.
const FormatVersion = 1

// FormatName is the "format" field of every savepoint metadata file.
const FormatName = "weir-savepoint"

// MaxKeyGroups bounds MaxParallelism (as state.MaxKeyGroups does).
const MaxKeyGroups = 1 << 15

var (
	// ErrCorrupt is wrapped by errors about damaged data: malformed or
	// truncated metadata or data files, checksum, size or count mismatches.
	ErrCorrupt = errors.New("corrupt")
	// ErrForeign is wrapped when a file is not a weir savepoint's, or its
	// metadata names another job or savepoint than its directory does.
	ErrForeign = errors.New("not this savepoint's")
	// ErrNewerFormat is wrapped when a file was written by a newer weir
	// (format version above FormatVersion).
	ErrNewerFormat = errors.New("written by a newer weir")
	// ErrExists is wrapped by Create and Commit when the savepoint (or any
	// file of it) exists already: a savepoint is never overwritten.
	ErrExists = errors.New("savepoint exists already")
	// ErrNoSavepoint is wrapped by FindLatest when a job has no committed
	// savepoint in the store.
	ErrNoSavepoint = errors.New("no committed savepoint")
)

// Metadata is the content of a savepoint's _metadata file: what the
// savepoint holds and where, with the size and SHA-256 of every file.
type Metadata struct {
	Job     string    `json:"job"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	// MaxParallelism is the job's key-group count.
	MaxParallelism int `json:"max_parallelism"`
	// Parallelism is the parallelism the savepoint was taken at.
	Parallelism int `json:"parallelism"`
	// Pipeline is the pipeline proto file (PipelineBase); Records is 0.
	Pipeline File `json:"pipeline"`
	// Transforms hold the user state and timers of stateful transforms.
	Transforms []Transform `json:"transforms,omitempty"`
	// Groups hold the buffers and trigger state of GroupByKeys.
	Groups []Group `json:"groups,omitempty"`
	// SideInputs hold the side inputs, and parked main input, of the
	// transforms that read side inputs.
	SideInputs []SideInputs `json:"side_inputs,omitempty"`
	// Sources hold the positions of sources: their residual restrictions.
	Sources []Source `json:"sources,omitempty"`
	// FiredImpulses are the unique names of the Impulses that have fired
	// (a restored job does not fire them again).
	FiredImpulses []string `json:"fired_impulses,omitempty"`
	// Type is how the savepoint holds its keyed state, side inputs and
	// parked input: Canonical ("" reads as it), in data files of records,
	// or Native, as the Pebble checkpoints of its subtasks (native.go).
	Type Format `json:"type,omitempty"`
	// Native are the subtasks' Pebble checkpoints of a native savepoint.
	Native []NativeDB `json:"native,omitempty"`
}

// File is one file of a savepoint.
type File struct {
	// Path is relative to the savepoint directory.
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // lowercase hex
	// KeyGroups is the key-group range of a keyed data file (sections
	// Transforms and Groups), nil for other files.
	KeyGroups *KeyGroupRange `json:"key_groups,omitempty"`
	// Records is the number of records of a data file.
	Records int64 `json:"records,omitempty"`
}

// KeyGroupRange is the half-open range [Start, End) of key groups.
type KeyGroupRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Contains reports whether key group kg is in r.
func (r KeyGroupRange) Contains(kg int) bool { return r.Start <= kg && kg < r.End }

// StateKind is the kind of a user state declaration.
type StateKind string

// The kinds of user state (Beam's state specs).
const (
	KindValue       StateKind = "value"
	KindBag         StateKind = "bag"
	KindCombining   StateKind = "combining"
	KindMap         StateKind = "map"
	KindSet         StateKind = "set"
	KindOrderedList StateKind = "ordered_list"
)

// TimeDomain is the time domain of a timer family.
type TimeDomain string

// The time domains of timers.
const (
	EventTime      TimeDomain = "event"
	ProcessingTime TimeDomain = "processing"
)

// Transform is the state of one stateful transform (a ParDo with user state
// or timers).
type Transform struct {
	UniqueName string `json:"unique_name"`
	// DoFn identifies the transform's DoFn, opaque to this package (e.g.
	// the ParDo payload's DoFn URN and a hash of its spec): a restore can
	// tell that a transform of the same name now runs another DoFn.
	DoFn   string        `json:"dofn,omitempty"`
	States []StateSpec   `json:"states,omitempty"`
	Timers []TimerFamily `json:"timers,omitempty"`
	// Files are keyed: StateRecord and TimerRecord.
	Files []File `json:"files,omitempty"`
}

// StateSpec declares one user state of a transform. Coders are IDs of
// coders in the pipeline proto.
type StateSpec struct {
	ID          string    `json:"id"`
	Kind        StateKind `json:"kind"`
	KeyCoder    string    `json:"key_coder"`
	WindowCoder string    `json:"window_coder"`
	// ValueCoder codes values: a combining state's accumulator, a map's
	// values, an ordered list's elements. Optional for sets.
	ValueCoder string `json:"value_coder,omitempty"`
	// UserKeyCoder codes a map's keys and a set's elements.
	UserKeyCoder string `json:"user_key_coder,omitempty"`
}

// TimerFamily declares one timer family of a transform.
type TimerFamily struct {
	ID          string     `json:"id"`
	Domain      TimeDomain `json:"domain"`
	KeyCoder    string     `json:"key_coder"`
	WindowCoder string     `json:"window_coder"`
}

// Group is the state of one GroupByKey: buffered values and trigger state.
type Group struct {
	UniqueName  string `json:"unique_name"`
	KeyCoder    string `json:"key_coder"`
	ValueCoder  string `json:"value_coder"`
	WindowCoder string `json:"window_coder"`
	// Files are keyed: GroupValueRecord and TriggerRecord.
	Files []File `json:"files,omitempty"`
}

// SideInputs are the side inputs of one transform that reads them, and its
// main input parked until the side input windows it needs are ready.
type SideInputs struct {
	UniqueName string          `json:"unique_name"`
	Inputs     []SideInputSpec `json:"inputs,omitempty"`
	// InputCoder is the windowed value coder of the main input, which
	// codes the elements of ParkedRecords (required if there are any).
	InputCoder string `json:"input_coder,omitempty"`
	// Files are unkeyed: SideInputRecord and ParkedRecord.
	Files []File `json:"files,omitempty"`
}

// SideInputKind is how a side input is read.
type SideInputKind string

// The kinds of side input (Beam's access patterns).
const (
	SideIterable SideInputKind = "iterable"
	SideMultimap SideInputKind = "multimap"
)

// SideInputSpec declares one side input of a transform by its local name.
type SideInputSpec struct {
	ID          string        `json:"id"`
	Kind        SideInputKind `json:"kind"`
	KeyCoder    string        `json:"key_coder,omitempty"` // multimap only
	ValueCoder  string        `json:"value_coder"`
	WindowCoder string        `json:"window_coder"`
}

// Source is the position of one source: the residual restrictions it has
// yet to read.
type Source struct {
	UniqueName string `json:"unique_name"`
	// RestrictionCoder optionally names the coder of the residuals.
	RestrictionCoder string `json:"restriction_coder,omitempty"`
	// Files are unkeyed: ResidualRecord.
	Files []File `json:"files,omitempty"`
}

// dataFiles yields every data file of m with its section and owner.
func (m *Metadata) dataFiles() iter.Seq2[ownerKey, File] {
	return func(yield func(ownerKey, File) bool) {
		each := func(sec Section, owner string, fs []File) bool {
			for _, f := range fs {
				if !yield(ownerKey{sec, owner}, f) {
					return false
				}
			}
			return true
		}
		for _, t := range m.Transforms {
			if !each(SectionTransforms, t.UniqueName, t.Files) {
				return
			}
		}
		for _, g := range m.Groups {
			if !each(SectionGroups, g.UniqueName, g.Files) {
				return
			}
		}
		for _, s := range m.SideInputs {
			if !each(SectionSideInputs, s.UniqueName, s.Files) {
				return
			}
		}
		for _, s := range m.Sources {
			if !each(SectionSources, s.UniqueName, s.Files) {
				return
			}
		}
	}
}

// lists reports whether m lists the file at path for owner.
func (m *Metadata) lists(owner ownerKey, path string) bool {
	for key, f := range m.dataFiles() {
		if key == owner && f.Path == path {
			return true
		}
	}
	return false
}

// wire is the encoded form: the metadata plus format name and version.
type wire struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Metadata
}

// EncodeMetadata validates m and returns its encoding: one line of JSON
// (sections, declarations and files in a canonical order) and a line
// "weir-checksum sha256:<hex>" over the JSON line.
func EncodeMetadata(m *Metadata) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("savepoint: encode metadata of savepoint %q of job %q: %w", m.ID, m.Job, err)
	}
	version := FormatVersion
	if m.IsNative() {
		version = nativeVersion
	}
	w := wire{Format: FormatName, Version: version, Metadata: m.canonical()}
	body, err := json.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("savepoint: encode metadata of savepoint %q of job %q: %w", m.ID, m.Job, err)
	}
	return sealed.Seal(body), nil
}

// canonical returns a copy of m with every list sorted.
func (m *Metadata) canonical() Metadata {
	c := *m
	byPath := func(a, b File) int { return strings.Compare(a.Path, b.Path) }
	files := func(fs []File) []File { return slices.SortedStableFunc(slices.Values(fs), byPath) }
	c.Transforms = slices.Clone(m.Transforms)
	slices.SortFunc(c.Transforms, func(a, b Transform) int { return strings.Compare(a.UniqueName, b.UniqueName) })
	for i := range c.Transforms {
		t := &c.Transforms[i]
		t.States = slices.SortedStableFunc(slices.Values(t.States), func(a, b StateSpec) int { return strings.Compare(a.ID, b.ID) })
		t.Timers = slices.SortedStableFunc(slices.Values(t.Timers), func(a, b TimerFamily) int { return strings.Compare(a.ID, b.ID) })
		t.Files = files(t.Files)
	}
	c.Groups = slices.Clone(m.Groups)
	slices.SortFunc(c.Groups, func(a, b Group) int { return strings.Compare(a.UniqueName, b.UniqueName) })
	for i := range c.Groups {
		c.Groups[i].Files = files(c.Groups[i].Files)
	}
	c.SideInputs = slices.Clone(m.SideInputs)
	slices.SortFunc(c.SideInputs, func(a, b SideInputs) int { return strings.Compare(a.UniqueName, b.UniqueName) })
	for i := range c.SideInputs {
		s := &c.SideInputs[i]
		s.Inputs = slices.SortedStableFunc(slices.Values(s.Inputs), func(a, b SideInputSpec) int { return strings.Compare(a.ID, b.ID) })
		s.Files = files(s.Files)
	}
	c.Sources = slices.Clone(m.Sources)
	slices.SortFunc(c.Sources, func(a, b Source) int { return strings.Compare(a.UniqueName, b.UniqueName) })
	for i := range c.Sources {
		c.Sources[i].Files = files(c.Sources[i].Files)
	}
	c.FiredImpulses = slices.Sorted(slices.Values(m.FiredImpulses))
	c.Native = canonicalNative(m.Native)
	return c
}

// DecodeMetadata parses metadata read from object (named in every error,
// e.g. the store's URL and the object name). It refuses truncated or
// corrupt data and invalid metadata (ErrCorrupt), another format
// (ErrForeign) and a newer format version (ErrNewerFormat).
func DecodeMetadata(object string, data []byte) (*Metadata, error) {
	fail := func(sentinel error, format string, args ...any) error {
		return fmt.Errorf("savepoint: metadata %s: %w: %s", object, sentinel, fmt.Sprintf(format, args...))
	}
	var w wire
	version, e := sealed.Decode(data, FormatName, nativeVersion, &w)
	if e != nil {
		sentinel := map[sealed.Problem]error{sealed.Corrupt: ErrCorrupt, sealed.OtherFormat: ErrForeign, sealed.Newer: ErrNewerFormat}[e.Problem]
		return nil, fail(sentinel, "%s", e.Msg)
	}
	if w.Metadata.IsNative() != (version == nativeVersion) {
		return nil, fail(ErrCorrupt, "format version %d for a savepoint of type %q", version, w.Metadata.Type)
	}
	if err := w.Metadata.validate(); err != nil {
		return nil, fail(ErrCorrupt, "%v", err)
	}
	return &w.Metadata, nil
}

// validate checks what readers rely on: names, coders, key-group ranges
// inside [0, MaxParallelism), ranges of an owner disjoint, and file paths
// inside the savepoint directory, each listed once.
func (m *Metadata) validate() error {
	if err := CheckJob(m.Job); err != nil {
		return err
	}
	if err := CheckID(m.ID); err != nil {
		return err
	}
	if m.MaxParallelism < 1 || m.MaxParallelism > MaxKeyGroups {
		return fmt.Errorf("max parallelism %d outside [1, %d]", m.MaxParallelism, MaxKeyGroups)
	}
	if m.Parallelism < 1 || m.Parallelism > m.MaxParallelism {
		return fmt.Errorf("parallelism %d outside [1, max parallelism %d]", m.Parallelism, m.MaxParallelism)
	}
	v := validator{maxP: m.MaxParallelism, paths: map[string]bool{}}
	if m.Pipeline.Path != PipelineBase || m.Pipeline.KeyGroups != nil || m.Pipeline.Records != 0 {
		return fmt.Errorf("pipeline file %q: want path %q, no key groups and no records", m.Pipeline.Path, PipelineBase)
	}
	if err := v.file(m.Pipeline); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	names := newNameSet("transform")
	for _, t := range m.Transforms {
		if err := names.add(t.UniqueName); err != nil {
			return err
		}
		if err := t.validate(&v); err != nil {
			return fmt.Errorf("transform %q: %w", t.UniqueName, err)
		}
	}
	names = newNameSet("GroupByKey")
	for _, g := range m.Groups {
		if err := names.add(g.UniqueName); err != nil {
			return err
		}
		if err := needCoders("key", g.KeyCoder, "value", g.ValueCoder, "window", g.WindowCoder); err != nil {
			return fmt.Errorf("GroupByKey %q: %w", g.UniqueName, err)
		}
		if err := v.files(SectionGroups, g.Files); err != nil {
			return fmt.Errorf("GroupByKey %q: %w", g.UniqueName, err)
		}
	}
	names = newNameSet("side input reader")
	for _, s := range m.SideInputs {
		if err := names.add(s.UniqueName); err != nil {
			return err
		}
		if err := s.validate(&v); err != nil {
			return fmt.Errorf("side inputs of %q: %w", s.UniqueName, err)
		}
	}
	names = newNameSet("source")
	for _, s := range m.Sources {
		if err := names.add(s.UniqueName); err != nil {
			return err
		}
		if err := v.files(SectionSources, s.Files); err != nil {
			return fmt.Errorf("source %q: %w", s.UniqueName, err)
		}
	}
	names = newNameSet("fired Impulse")
	for _, name := range m.FiredImpulses {
		if err := names.add(name); err != nil {
			return err
		}
	}
	return m.validateNative(&v)
}

func (t *Transform) validate(v *validator) error {
	ids := newNameSet("state")
	for _, s := range t.States {
		if err := ids.add(s.ID); err != nil {
			return err
		}
		var err error
		switch s.Kind {
		case KindValue, KindBag, KindCombining, KindOrderedList:
			err = needCoders("key", s.KeyCoder, "window", s.WindowCoder, "value", s.ValueCoder)
		case KindMap:
			err = needCoders("key", s.KeyCoder, "window", s.WindowCoder, "value", s.ValueCoder, "user key", s.UserKeyCoder)
		case KindSet:
			err = needCoders("key", s.KeyCoder, "window", s.WindowCoder, "user key", s.UserKeyCoder)
		default:
			err = fmt.Errorf("unknown kind %q", s.Kind)
		}
		if err != nil {
			return fmt.Errorf("state %q: %w", s.ID, err)
		}
	}
	ids = newNameSet("timer family")
	for _, f := range t.Timers {
		if err := ids.add(f.ID); err != nil {
			return err
		}
		if f.Domain != EventTime && f.Domain != ProcessingTime {
			return fmt.Errorf("timer family %q: unknown time domain %q", f.ID, f.Domain)
		}
		if err := needCoders("key", f.KeyCoder, "window", f.WindowCoder); err != nil {
			return fmt.Errorf("timer family %q: %w", f.ID, err)
		}
	}
	return v.files(SectionTransforms, t.Files)
}

func (s *SideInputs) validate(v *validator) error {
	ids := newNameSet("side input")
	for _, in := range s.Inputs {
		if err := ids.add(in.ID); err != nil {
			return err
		}
		var err error
		switch in.Kind {
		case SideIterable:
			err = needCoders("value", in.ValueCoder, "window", in.WindowCoder)
		case SideMultimap:
			err = needCoders("key", in.KeyCoder, "value", in.ValueCoder, "window", in.WindowCoder)
		default:
			err = fmt.Errorf("unknown kind %q", in.Kind)
		}
		if err != nil {
			return fmt.Errorf("side input %q: %w", in.ID, err)
		}
	}
	return v.files(SectionSideInputs, s.Files)
}

// needCoders takes pairs of (what, coder ID) and refuses empty IDs.
func needCoders(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return fmt.Errorf("no %s coder", pairs[i])
		}
	}
	return nil
}

// nameSet refuses empty and repeated names of one kind.
type nameSet struct {
	what string
	seen map[string]bool
}

func newNameSet(what string) nameSet { return nameSet{what: what, seen: map[string]bool{}} }

func (s nameSet) add(name string) error {
	if name == "" {
		return fmt.Errorf("%s with an empty name", s.what)
	}
	if s.seen[name] {
		return fmt.Errorf("%s %q listed twice", s.what, name)
	}
	s.seen[name] = true
	return nil
}

// validator checks files across a whole metadata.
type validator struct {
	maxP  int
	paths map[string]bool
}

// file checks one file's path (relative, inside the savepoint, listed once)
// and figures.
func (v *validator) file(f File) error {
	if err := checkRelPath(f.Path); err != nil {
		return err
	}
	if v.paths[f.Path] {
		return fmt.Errorf("file %q listed twice", f.Path)
	}
	v.paths[f.Path] = true
	if f.Size < 0 || f.Records < 0 {
		return fmt.Errorf("file %q: negative size %d or record count %d", f.Path, f.Size, f.Records)
	}
	if !isSHA256Hex(f.SHA256) {
		return fmt.Errorf("file %q: sha256 %q is not 64 lowercase hex digits", f.Path, f.SHA256)
	}
	return nil
}

// files checks the data files of one owner in section sec: keyed or not as
// the section is, key-group ranges non-empty, inside [0, maxP) and disjoint.
func (v *validator) files(sec Section, fs []File) error {
	var ranges []KeyGroupRange
	for _, f := range fs {
		if err := v.file(f); err != nil {
			return err
		}
		if f.Size < minFileSize {
			return fmt.Errorf("file %q: size %d is less than an empty data file's", f.Path, f.Size)
		}
		kg := f.KeyGroups
		switch {
		case !sec.keyed() && kg != nil:
			return fmt.Errorf("file %q: key groups in section %s, which is not keyed", f.Path, sec)
		case !sec.keyed():
			continue
		case kg == nil:
			return fmt.Errorf("file %q: no key groups in keyed section %s", f.Path, sec)
		case kg.Start < 0 || kg.Start >= kg.End || kg.End > v.maxP:
			return fmt.Errorf("file %q: key groups [%d, %d) empty or outside [0, %d)", f.Path, kg.Start, kg.End, v.maxP)
		}
		ranges = append(ranges, *kg)
	}
	slices.SortFunc(ranges, func(a, b KeyGroupRange) int { return cmp.Compare(a.Start, b.Start) })
	for i := 1; i < len(ranges); i++ {
		if a, b := ranges[i-1], ranges[i]; b.Start < a.End {
			return fmt.Errorf("key-group ranges [%d, %d) and [%d, %d) overlap", a.Start, a.End, b.Start, b.End)
		}
	}
	return nil
}

// isSHA256Hex reports whether s is a SHA-256 in lowercase hex.
func isSHA256Hex(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == sha256.Size && hex.EncodeToString(b) == s
}
