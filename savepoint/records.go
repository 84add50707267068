package savepoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"
)

// Section is a part of a savepoint that holds data files.
type Section int

// The sections of a savepoint, and the records their data files hold.
const (
	// SectionTransforms: keyed StateRecords and TimerRecords.
	SectionTransforms Section = iota + 1
	// SectionGroups: keyed GroupValueRecords and TriggerRecords.
	SectionGroups
	// SectionSideInputs: unkeyed SideInputRecords and ParkedRecords.
	SectionSideInputs
	// SectionSources: unkeyed ResidualRecords.
	SectionSources
)

// String returns the section's name as in the metadata.
func (s Section) String() string {
	switch s {
	case SectionTransforms:
		return "transforms"
	case SectionGroups:
		return "groups"
	case SectionSideInputs:
		return "side_inputs"
	case SectionSources:
		return "sources"
	}
	return fmt.Sprintf("section(%d)", int(s))
}

func (s Section) valid() bool { return SectionTransforms <= s && s <= SectionSources }

// letter starts the names of the section's data files.
func (s Section) letter() byte { return "?tgsr"[max(0, min(int(s), 4))] }

// keyed reports whether the section's files and records have key groups.
func (s Section) keyed() bool { return s == SectionTransforms || s == SectionGroups }

// allows reports whether records of kind k belong in the section.
func (s Section) allows(k recordKind) bool {
	switch s {
	case SectionTransforms:
		return k == kindState || k == kindTimer
	case SectionGroups:
		return k == kindGroupValue || k == kindTrigger
	case SectionSideInputs:
		return k == kindSideInput || k == kindParked
	case SectionSources:
		return k == kindResidual
	}
	return false
}

// recordKind is the first byte of a framed record.
type recordKind byte

const (
	kindEnd recordKind = iota // the footer
	kindState
	kindTimer
	kindGroupValue
	kindTrigger
	kindSideInput
	kindParked
	kindResidual
	kindLimit // first invalid kind
)

// Record is one record of a data file: *StateRecord, *TimerRecord,
// *GroupValueRecord, *TriggerRecord, *SideInputRecord, *ParkedRecord or
// *ResidualRecord. Byte fields that are empty are read back as nil.
type Record interface {
	kind() recordKind
	// keyGroup returns the record's key group, or -1 if it has none.
	keyGroup() int
	appendBody(b []byte) []byte
}

// KeyGroupOf returns the key group of a keyed record (StateRecord,
// TimerRecord, GroupValueRecord, TriggerRecord), and false for the others.
func KeyGroupOf(r Record) (int, bool) {
	kg := r.keyGroup()
	return kg, kg >= 0
}

// StateRecord is one piece of user state of a stateful transform, for one
// key in one window. Value, bag and combining state have no UserKey and
// SortKey 0 (a bag is one record per element, in order); a map has one
// record per map key (UserKey), a set one per element (UserKey, empty
// Value), an ordered list one per element with its SortKey.
type StateRecord struct {
	KeyGroup int
	Key      []byte // encoded with the state's key coder
	Window   []byte // encoded with its window coder
	StateID  string
	UserKey  []byte
	SortKey  int64
	Value    []byte
}

// TimerRecord is one set timer of a stateful transform.
type TimerRecord struct {
	KeyGroup int
	Key      []byte
	Window   []byte
	Family   string
	Tag      []byte
	Domain   TimeDomain
	Fire     int64 // fire time, Beam milliseconds
	Hold     int64 // output timestamp (the watermark hold), Beam milliseconds
	// Pane is the pane the timer was set with, in Beam's PaneInfo encoding
	// (the last field of beam:coder:timer:v1), returned to the DoFn when
	// the timer fires; nil if none was recorded.
	Pane []byte
}

// GroupValueRecord is one buffered element of a GroupByKey.
type GroupValueRecord struct {
	KeyGroup  int
	Key       []byte
	Window    []byte
	Timestamp int64
	Value     []byte
}

// TriggerRecord is the trigger state of a GroupByKey for one key and
// window, opaque to this package.
type TriggerRecord struct {
	KeyGroup int
	Key      []byte
	Window   []byte
	State    []byte
}

// SideInputRecord is a run of values of a side input in one window: of the
// whole input (iterable, Key nil) or of one key (multimap).
type SideInputRecord struct {
	SideInput string // the side input's local name (SideInputSpec.ID)
	Window    []byte
	Key       []byte
	Values    []byte // whole encoded values, concatenated
}

// ParkedRecord is main input parked until the side input windows it reads
// are ready: Elements (whole encoded windowed values, concatenated) wait
// for every side input window ending at or before Need; MinTimestamp is
// their least timestamp.
type ParkedRecord struct {
	Need         int64
	MinTimestamp int64
	Elements     []byte
}

// ResidualRecord is one residual restriction of a source, opaque to this
// package, with the source's watermark estimate for it.
type ResidualRecord struct {
	Restriction []byte
	Watermark   int64
}

func (*StateRecord) kind() recordKind      { return kindState }
func (*TimerRecord) kind() recordKind      { return kindTimer }
func (*GroupValueRecord) kind() recordKind { return kindGroupValue }
func (*TriggerRecord) kind() recordKind    { return kindTrigger }
func (*SideInputRecord) kind() recordKind  { return kindSideInput }
func (*ParkedRecord) kind() recordKind     { return kindParked }
func (*ResidualRecord) kind() recordKind   { return kindResidual }

func (r *StateRecord) keyGroup() int      { return r.KeyGroup }
func (r *TimerRecord) keyGroup() int      { return r.KeyGroup }
func (r *GroupValueRecord) keyGroup() int { return r.KeyGroup }
func (r *TriggerRecord) keyGroup() int    { return r.KeyGroup }
func (*SideInputRecord) keyGroup() int    { return -1 }
func (*ParkedRecord) keyGroup() int       { return -1 }
func (*ResidualRecord) keyGroup() int     { return -1 }

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// appendKeyed appends the fields every keyed record starts with.
func appendKeyed(b []byte, kg int, key, window []byte) []byte {
	b = binary.AppendUvarint(b, uint64(kg))
	return appendBytes(appendBytes(b, key), window)
}

func (r *StateRecord) appendBody(b []byte) []byte {
	b = appendString(appendKeyed(b, r.KeyGroup, r.Key, r.Window), r.StateID)
	b = binary.AppendVarint(appendBytes(b, r.UserKey), r.SortKey)
	return appendBytes(b, r.Value)
}

func (r *TimerRecord) appendBody(b []byte) []byte {
	b = appendBytes(appendString(appendKeyed(b, r.KeyGroup, r.Key, r.Window), r.Family), r.Tag)
	b = append(b, domainCode(r.Domain))
	return appendBytes(binary.AppendVarint(binary.AppendVarint(b, r.Fire), r.Hold), r.Pane)
}

func (r *GroupValueRecord) appendBody(b []byte) []byte {
	b = binary.AppendVarint(appendKeyed(b, r.KeyGroup, r.Key, r.Window), r.Timestamp)
	return appendBytes(b, r.Value)
}

func (r *TriggerRecord) appendBody(b []byte) []byte {
	return appendBytes(appendKeyed(b, r.KeyGroup, r.Key, r.Window), r.State)
}

func (r *SideInputRecord) appendBody(b []byte) []byte {
	b = appendBytes(appendBytes(appendString(b, r.SideInput), r.Window), r.Key)
	return appendBytes(b, r.Values)
}

func (r *ParkedRecord) appendBody(b []byte) []byte {
	b = binary.AppendVarint(binary.AppendVarint(b, r.Need), r.MinTimestamp)
	return appendBytes(b, r.Elements)
}

func (r *ResidualRecord) appendBody(b []byte) []byte {
	return binary.AppendVarint(appendBytes(b, r.Restriction), r.Watermark)
}

// domainCode is a time domain's byte in a TimerRecord: Beam's TimeDomain
// numbers, 1 event time, 2 processing time (0 for an invalid domain).
func domainCode(d TimeDomain) byte {
	switch d {
	case EventTime:
		return 1
	case ProcessingTime:
		return 2
	}
	return 0
}

// body decodes the fields of one record body; the first error sticks.
type body struct {
	b      []byte
	err    error
	intern *interner // nil: strings are copied
}

func (d *body) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("malformed %s", what)
	}
}

func (d *body) uvarint(what string) uint64 { return number(d, what, binary.Uvarint) }

func (d *body) varint(what string) int64 { return number(d, what, binary.Varint) }

// number decodes one varint with read (binary.Uvarint or binary.Varint).
func number[T uint64 | int64](d *body, what string, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *body) bytes(what string) []byte {
	n, k := binary.Uvarint(d.b)
	if k <= 0 {
		d.fail(what + " length") // built only on failure: this runs per field
		return nil
	}
	d.b = d.b[k:]
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	if n == 0 {
		return nil
	}
	return v
}

func (d *body) string(what string) string {
	if d.intern != nil {
		return d.intern.intern(d.bytes(what))
	}
	return string(d.bytes(what))
}

func (d *body) keyGroup() int {
	kg := d.uvarint("key group")
	if kg >= MaxKeyGroups {
		d.fail("key group")
		return 0
	}
	return int(kg)
}

func (d *body) domain() TimeDomain {
	if len(d.b) == 0 {
		d.fail("time domain")
		return ""
	}
	c := d.b[0]
	d.b = d.b[1:]
	switch c {
	case 1:
		return EventTime
	case 2:
		return ProcessingTime
	}
	d.fail("time domain")
	return ""
}

// decodeRecord decodes the body of a record of kind k.
func decodeRecord(k recordKind, b []byte) (Record, error) {
	return decodeRecordInterned(k, b, nil, nil)
}

// slots are the records of the frequent kinds a borrowing reader decodes
// into, one after the other, instead of allocating each.
type slots struct {
	state StateRecord
	timer TimerRecord
	group GroupValueRecord
}

// slot returns p, or a new T if p is nil.
func slot[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}

// interner hands out one string for equal bytes, for the few distinct
// strings of a file (state IDs, timer families).
type interner struct{ m map[string]string }

// intern returns b as a string, the same one each time.
func (n *interner) intern(b []byte) string {
	if s, ok := n.m[string(b)]; ok {
		return s
	}
	if n.m == nil {
		n.m = map[string]string{}
	}
	s := string(b)
	if len(n.m) < 1024 {
		n.m[s] = s
	}
	return s
}

// decodeRecordInterned is decodeRecord with its strings from intern, and
// the records of the kinds in s (if not nil) decoded into s.
func decodeRecordInterned(k recordKind, b []byte, intern *interner, s *slots) (Record, error) {
	d := &body{b: b, intern: intern}
	var st *StateRecord
	var tm *TimerRecord
	var gv *GroupValueRecord
	if s != nil {
		st, tm, gv = &s.state, &s.timer, &s.group
	}
	var r Record
	switch k {
	case kindState:
		st = slot(st)
		*st = StateRecord{KeyGroup: d.keyGroup(), Key: d.bytes("key"), Window: d.bytes("window"),
			StateID: d.string("state ID"), UserKey: d.bytes("user key"), SortKey: d.varint("sort key"), Value: d.bytes("value")}
		r = st
	case kindTimer:
		tm = slot(tm)
		*tm = TimerRecord{KeyGroup: d.keyGroup(), Key: d.bytes("key"), Window: d.bytes("window"),
			Family: d.string("timer family"), Tag: d.bytes("tag"), Domain: d.domain(), Fire: d.varint("fire time"), Hold: d.varint("hold"), Pane: d.bytes("pane")}
		r = tm
	case kindGroupValue:
		gv = slot(gv)
		*gv = GroupValueRecord{KeyGroup: d.keyGroup(), Key: d.bytes("key"), Window: d.bytes("window"),
			Timestamp: d.varint("timestamp"), Value: d.bytes("value")}
		r = gv
	case kindTrigger:
		r = &TriggerRecord{KeyGroup: d.keyGroup(), Key: d.bytes("key"), Window: d.bytes("window"), State: d.bytes("trigger state")}
	case kindSideInput:
		r = &SideInputRecord{SideInput: d.string("side input ID"), Window: d.bytes("window"), Key: d.bytes("key"), Values: d.bytes("values")}
	case kindParked:
		r = &ParkedRecord{Need: d.varint("need"), MinTimestamp: d.varint("min timestamp"), Elements: d.bytes("elements")}
	case kindResidual:
		r = &ResidualRecord{Restriction: d.bytes("restriction"), Watermark: d.varint("watermark")}
	default:
		return nil, fmt.Errorf("unknown record kind %d", k)
	}
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%d bytes after the last field", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("record of kind %d: %w", k, d.err)
	}
	return r, nil
}

// checkRecord refuses records a writer must not write: invalid time
// domains, key groups outside [0, MaxKeyGroups).
func checkRecord(r Record) error {
	if isNil(r) {
		return errNilRecord
	}
	if kg := r.keyGroup(); kg >= MaxKeyGroups || kg < 0 && r.kind() <= kindTrigger {
		return fmt.Errorf("key group %d outside [0, %d)", kg, MaxKeyGroups)
	}
	if t, ok := r.(*TimerRecord); ok && domainCode(t.Domain) == 0 {
		return fmt.Errorf("timer with unknown time domain %q", t.Domain)
	}
	return nil
}

var errNilRecord = errors.New("nil record")

// isNil reports whether r is nil or a nil pointer.
func isNil(r Record) bool {
	return r == nil || reflect.ValueOf(r).IsNil() // every Record is a pointer
}

// maxRecordSize bounds a record's body; it keeps a corrupt length from
// sizing anything before the bytes are there.
const maxRecordSize = math.MaxInt32
