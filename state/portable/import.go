package portable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// ErrNotRestored is wrapped by the error of a record whose owner, state or
// side input the new pipeline has no place for, unless the Target allows
// non-restored state (then it is skipped and reported).
var ErrNotRestored = errors.New("portable: state has no target in the new pipeline")

// Target says where a savepoint's state goes in a new subtask's DB.
type Target struct {
	// Transforms maps a stateful transform's unique name to the transform
	// ID its state uses in the DB.
	Transforms func(uniqueName string) (transformID string, ok bool)
	// StateKind gives the kind of a transform's state (from the new
	// pipeline, or the savepoint's metadata): it says where a StateRecord
	// goes (a bag and an ordered list entry at sort key 0 look alike).
	StateKind func(uniqueName, stateID string) (savepoint.StateKind, bool)
	// Group is the DB's GroupByKey, or nil; records of a GroupByKey of
	// another name are not restored.
	Group *Group
	// SideInput maps a side input (its reader's unique name and its local
	// name) to its index in the stage, and says whether it is a multimap.
	SideInput func(owner, local string) (index int, multimap bool, ok bool)
	// Parked says whether this DB holds the parked main input of owner
	// (known) and whether it takes the n-th parked record of owner it is
	// given (n counts from 0): parked input is main input, and taking one
	// record in more than one subtask processes its elements more than
	// once. nil: no parked input is restored.
	Parked func(owner string, n int) (take, known bool)
	// OnUserState is called, in the import's bundle, once for each run of
	// user state records of one cell (transform, state, key, window) it
	// writes: where the engine sets the window's expiry timer, which is
	// not exported.
	OnUserState func(b *state.Bundle, c state.Cell) error
	// AllowNonRestored skips (and reports) records with no target instead
	// of failing (--allow_non_restored_state).
	AllowNonRestored bool
	// Migrate, if set, gives the migration of the values of a transform's
	// state (its unique name in the pipeline and state ID), nil if they
	// are written as they are: where the engine re-encodes rows whose
	// schema changed. See migrate.go.
	Migrate func(uniqueName, stateID string) func(value []byte) ([]byte, error)
	// RunBytes bounds the user state and timers gathered in memory before
	// they are written out as one sorted run (state.Load; 0:
	// state.DefaultLoadRunBytes).
	RunBytes int
}

// Report is what an import did.
type Report struct {
	Imported   int // records written
	OutOfRange int // keyed records outside the DB's key groups
	Declined   int // parked records left to other subtasks
	// NotRestored counts the records skipped for want of a target, by
	// what they belonged to (an owner, or an owner's state or side input).
	NotRestored map[string]int
}

// NotRestoredNames returns what NotRestored names, sorted.
func (r Report) NotRestoredNames() []string {
	out := make([]string, 0, len(r.NotRestored))
	for n := range r.NotRestored {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// bundleRecords bounds the records written in one bundle before it is
// committed.
const bundleRecords = 4096

// Importer writes savepoint records into a fresh DB: the state of key
// groups [lo, hi) (the subtask's range at the new parallelism: records of
// other key groups are skipped) and the unkeyed state. It uses the state
// package's write paths, so indexes (timer index and holds, multimap side
// input keys, parked hold index) are rebuilt, and appends get sequence
// numbers in the order records are given: give each owner's records in the
// order Export produced them (a savepoint file's order). Not safe for
// concurrent use.
type Importer struct {
	db     *state.DB
	ld     *state.Load // user state and timers go through it
	pend   *gathered   // the values of one cell to migrate (migrate.go)
	lo, hi int
	t      Target
	b      *state.Bundle
	n      int // records in b
	buf    *state.GroupBuffer
	parked map[string]int
	last   state.Cell // the cell OnUserState was last called for, if any
	any    bool
	enc    []byte // a timer's encoded form, reused
	rep    Report
	done   bool
}

// NewImporter starts an import into db of key groups [lo, hi).
func NewImporter(db *state.DB, lo, hi int, t Target) (*Importer, error) {
	if lo < 0 || lo > hi || hi > state.MaxKeyGroups {
		return nil, fmt.Errorf("portable: import: key groups [%d, %d) outside [0, %d)", lo, hi, state.MaxKeyGroups)
	}
	im := &Importer{db: db, lo: lo, hi: hi, t: t, parked: map[string]int{}, rep: Report{NotRestored: map[string]int{}}}
	if t.Group != nil {
		if !t.Group.Triggered && t.Group.WindowFirst && t.Group.MaxTimestamp == nil {
			return nil, fmt.Errorf("portable: import: window-first GroupByKey %q without MaxTimestamp", t.Group.Name)
		}
		im.buf = db.GroupBuffer(t.Group.Prefix)
	}
	ld, err := db.NewLoad(t.RunBytes)
	if err != nil {
		return nil, fmt.Errorf("portable: import: %w", err)
	}
	im.ld = ld
	return im, nil
}

// Import writes one record of owner. It copies what it keeps: the
// record's bytes may be reused once it returns.
func (im *Importer) Import(owner Owner, rec savepoint.Record) error {
	if im.done {
		return fmt.Errorf("portable: import of a record of %s after Close", owner)
	}
	if err := im.record(owner, rec); err != nil {
		if errors.Is(err, ErrNotRestored) && im.t.AllowNonRestored {
			return nil
		}
		return fmt.Errorf("portable: import into %s: %w", im.db.Dir(), err)
	}
	return nil
}

// notRestored reports (or counts) a record with no target.
func (im *Importer) notRestored(what string) error {
	if im.t.AllowNonRestored {
		im.rep.NotRestored[what]++
	}
	return fmt.Errorf("%w: %s", ErrNotRestored, what)
}

// inRange reports whether a keyed record belongs to this DB.
func (im *Importer) inRange(kg int) bool {
	if kg >= im.lo && kg < im.hi {
		return true
	}
	im.rep.OutOfRange++
	return false
}

func (im *Importer) record(o Owner, rec savepoint.Record) error {
	if err := im.flushUnless(o, rec); err != nil {
		return err
	}
	switch r := rec.(type) {
	case *savepoint.StateRecord:
		return im.state(o, r)
	case *savepoint.TimerRecord:
		return im.timer(o, r)
	case *savepoint.GroupValueRecord:
		return im.groupValue(o, r)
	case *savepoint.TriggerRecord:
		return im.trigger(o, r)
	case *savepoint.SideInputRecord:
		return im.sideInput(o, r)
	case *savepoint.ParkedRecord:
		return im.park(o, r)
	}
	return fmt.Errorf("%s: record %T is not state of a subtask's DB", o, rec)
}

// transform returns the transform ID of owner o.
func (im *Importer) transform(o Owner) (string, error) {
	if o.Section != savepoint.SectionTransforms {
		return "", fmt.Errorf("%s: user state or timer outside the transforms section", o)
	}
	var id string
	ok := false
	if im.t.Transforms != nil {
		id, ok = im.t.Transforms(o.Name)
	}
	if !ok || id == "" {
		return "", im.notRestored(fmt.Sprintf("transform %q", o.Name))
	}
	return id, nil
}

// bundle returns the bundle to write keyed state in.
func (im *Importer) bundle() (*state.Bundle, error) {
	if im.n >= bundleRecords {
		if err := im.commit(); err != nil {
			return nil, err
		}
	}
	if im.b == nil {
		im.b = im.ld.NewBundle()
	}
	im.n++
	im.rep.Imported++
	return im.b, nil
}

func (im *Importer) commit() error {
	if im.b == nil {
		return nil
	}
	b := im.b
	im.b, im.n = nil, 0
	return b.Commit()
}

func (im *Importer) state(o Owner, r *savepoint.StateRecord) error {
	id, err := im.transform(o)
	if err != nil {
		return err
	}
	var kind savepoint.StateKind
	ok := false
	if im.t.StateKind != nil {
		kind, ok = im.t.StateKind(o.Name, r.StateID)
	}
	if !ok {
		return im.notRestored(fmt.Sprintf("state %q of transform %q", r.StateID, o.Name))
	}
	if !im.inRange(r.KeyGroup) {
		return nil
	}
	c := state.Cell{KeyGroup: r.KeyGroup, Transform: id, StateID: r.StateID, Window: r.Window, Key: r.Key}
	if m := im.migration(o.Name, r.StateID, kind); m != nil {
		return im.migrated(o, c, kind, r, m)
	}
	return im.put(o, c, kind, r.UserKey, r.SortKey, r.Value)
}

// put writes one state value of kind into cell c of owner o.
func (im *Importer) put(o Owner, c state.Cell, kind savepoint.StateKind, userKey []byte, sortKey int64, value []byte) error {
	b, err := im.bundle()
	if err != nil {
		return err
	}
	switch kind {
	case savepoint.KindValue, savepoint.KindBag, savepoint.KindCombining:
		err = b.AppendBag(c, value)
	case savepoint.KindMap, savepoint.KindSet:
		err = b.AppendMap(c, userKey, value)
	case savepoint.KindOrderedList:
		err = b.AppendOrdered(c, append(binary.AppendUvarint(nil, uint64(sortKey)), value...))
	default:
		err = fmt.Errorf("unknown state kind %q", kind)
	}
	if err == nil {
		err = im.onUserState(b, c)
	}
	if err != nil {
		return fmt.Errorf("state %q of %s: %w", c.StateID, o, err)
	}
	return nil
}

// onUserState calls Target.OnUserState when c is not the cell of the
// record before.
func (im *Importer) onUserState(b *state.Bundle, c state.Cell) error {
	if im.t.OnUserState == nil {
		return nil
	}
	l := &im.last
	if im.any && l.KeyGroup == c.KeyGroup && l.Transform == c.Transform && l.StateID == c.StateID &&
		bytes.Equal(l.Window, c.Window) && bytes.Equal(l.Key, c.Key) {
		return nil
	}
	im.any = true
	*l = state.Cell{KeyGroup: c.KeyGroup, Transform: c.Transform, StateID: c.StateID,
		Window: append(l.Window[:0], c.Window...), Key: append(l.Key[:0], c.Key...)}
	return im.t.OnUserState(b, c)
}

func (im *Importer) timer(o Owner, r *savepoint.TimerRecord) error {
	id, err := im.transform(o)
	if err != nil {
		return err
	}
	d, err := fromDomain(r.Domain)
	if err != nil {
		return fmt.Errorf("timer %s of %s: %w", r.Family, o, err)
	}
	if !im.inRange(r.KeyGroup) {
		return nil
	}
	b, err := im.bundle()
	if err != nil {
		return err
	}
	t := state.Timer{
		TimerID: state.TimerID{KeyGroup: r.KeyGroup, Domain: d, Transform: id, Family: r.Family, Key: r.Key, Window: r.Window, Tag: r.Tag},
		Fire:    r.Fire, Hold: r.Hold,
	}
	// Built in the importer's buffer: the write copies it.
	im.enc = append(appendTimerHead(im.enc[:0], r.Key, r.Tag, r.Window, r.Fire, r.Hold), r.Pane...)
	t.Encoded = im.enc
	if err := b.SetTimer(t); err != nil {
		return fmt.Errorf("timer %s of %s: %w", r.Family, o, err)
	}
	return nil
}

// group checks that o is the DB's GroupByKey.
func (im *Importer) group(o Owner) error {
	if o.Section != savepoint.SectionGroups {
		return fmt.Errorf("%s: GroupByKey state outside the groups section", o)
	}
	if im.t.Group == nil || im.t.Group.Name != o.Name {
		return im.notRestored(fmt.Sprintf("GroupByKey %q", o.Name))
	}
	return nil
}

func (im *Importer) groupValue(o Owner, r *savepoint.GroupValueRecord) error {
	if err := im.group(o); err != nil {
		return err
	}
	if !im.inRange(r.KeyGroup) {
		return nil
	}
	g := im.t.Group
	if g.Triggered {
		b, err := im.bundle()
		if err != nil {
			return err
		}
		c := state.Cell{KeyGroup: r.KeyGroup, Transform: g.Transform, StateID: g.ValuesCell, Window: r.Window, Key: r.Key}
		if err := b.AppendBag(c, frameValue(r.Value)); err != nil {
			return fmt.Errorf("value of %s: %w", o, err)
		}
		return nil
	}
	if r.Timestamp == NoTimestamp {
		return fmt.Errorf("%s: a value without a timestamp (of a triggered GroupByKey) for a GroupByKey that is not triggered", o)
	}
	first, second := r.Key, r.Window
	if g.WindowFirst {
		maxTs, err := g.MaxTimestamp(r.Window)
		if err != nil {
			return fmt.Errorf("%s: max timestamp of window %x: %w", o, r.Window, err)
		}
		first, second = state.WindowKey(maxTs, r.Window), r.Key
	}
	im.rep.Imported++
	if err := im.buf.Add(r.KeyGroup, first, second, r.Timestamp, r.Value); err != nil {
		return fmt.Errorf("value of %s: %w", o, err)
	}
	return nil
}

func (im *Importer) trigger(o Owner, r *savepoint.TriggerRecord) error {
	if err := im.group(o); err != nil {
		return err
	}
	g := im.t.Group
	if !g.Triggered {
		return fmt.Errorf("%s: trigger state for a GroupByKey that is not triggered", o)
	}
	stateID, value, t, err := decodePiece(r)
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	if !im.inRange(r.KeyGroup) {
		return nil
	}
	b, err := im.bundle()
	if err != nil {
		return err
	}
	if t != nil {
		t.Transform = g.Transform
		err = b.SetTimer(*t)
	} else {
		err = b.AppendBag(state.Cell{KeyGroup: r.KeyGroup, Transform: g.Transform, StateID: stateID, Window: r.Window, Key: r.Key}, value)
	}
	if err != nil {
		return fmt.Errorf("trigger state of %s: %w", o, err)
	}
	return nil
}

func (im *Importer) sideInput(o Owner, r *savepoint.SideInputRecord) error {
	if o.Section != savepoint.SectionSideInputs {
		return fmt.Errorf("%s: side input outside the side inputs section", o)
	}
	var index int
	var multimap, ok bool
	if im.t.SideInput != nil {
		index, multimap, ok = im.t.SideInput(o.Name, r.SideInput)
	}
	if !ok {
		return im.notRestored(fmt.Sprintf("side input %q of %q", r.SideInput, o.Name))
	}
	sb := im.db.NewSideBatch()
	var err error
	if multimap {
		err = sb.AddMulti(index, r.Window, r.Key, r.Values)
	} else if len(r.Key) > 0 {
		err = fmt.Errorf("a keyed run for iterable side input %q", r.SideInput)
	} else {
		err = sb.AddValues(index, r.Window, r.Values)
	}
	if err != nil {
		sb.Discard()
		return fmt.Errorf("%s: %w", o, err)
	}
	im.rep.Imported++
	return sb.Commit()
}

func (im *Importer) park(o Owner, r *savepoint.ParkedRecord) error {
	if o.Section != savepoint.SectionSideInputs {
		return fmt.Errorf("%s: parked input outside the side inputs section", o)
	}
	n := im.parked[o.Name]
	take, known := false, false
	if im.t.Parked != nil {
		take, known = im.t.Parked(o.Name, n)
	}
	if !known {
		return im.notRestored(fmt.Sprintf("parked input of %q", o.Name))
	}
	im.parked[o.Name] = n + 1
	if !take {
		im.rep.Declined++
		return nil
	}
	im.rep.Imported++
	return im.db.Park(r.Need, r.MinTimestamp, r.Elements)
}

// Close commits what is pending and returns the report.
func (im *Importer) Close() (Report, error) {
	if im.done {
		return im.rep, errors.New("portable: import closed twice")
	}
	im.done = true
	err := im.flushUnless(Owner{}, nil)
	if err == nil {
		err = im.commit()
	}
	if err == nil && im.buf != nil {
		err = im.buf.Flush()
	}
	if err == nil {
		err = im.ld.Finish()
	} else {
		im.ld.Abort()
	}
	if err != nil {
		return im.rep, fmt.Errorf("portable: import into %s: %w", im.db.Dir(), err)
	}
	return im.rep, nil
}

// Abort drops what is pending (the DB should be discarded: what was
// committed stays).
func (im *Importer) Abort() {
	if im.b != nil {
		im.b.Discard()
		im.b = nil
	}
	if !im.done {
		im.ld.Abort()
	}
	im.done = true
}
