package inspect

import (
	"slices"

	"github.com/weir-runner/weir/savepoint"
)

// Entry is one decoded record: *StateEntry, *TimerEntry, *GroupValueEntry,
// *TriggerEntry, *SideInputEntry, *ParkedEntry or *ResidualEntry. Each
// prints as one JSON object whose first member "kind" names it.
type Entry interface {
	// Owner returns the unique name of the transform the record is of.
	Owner() string
	MarshalJSON() ([]byte, error)
}

// StateEntry is one piece of user state (savepoint.StateRecord, decoded).
// UserKey is set for map and set state, SortKey for ordered lists; a set's
// Value is nil.
type StateEntry struct {
	Transform string
	State     string
	Kind      savepoint.StateKind
	KeyGroup  int
	Key       any
	Window    any
	UserKey   any
	SortKey   int64
	Value     any
}

// TimerEntry is one set timer.
type TimerEntry struct {
	Transform string
	Timer     string // the timer family
	KeyGroup  int
	Key       any
	Window    any
	Tag       string
	Fire      Timestamp
	Hold      Timestamp
	Domain    savepoint.TimeDomain
}

// GroupValueEntry is one element buffered by a GroupByKey.
type GroupValueEntry struct {
	Transform string
	KeyGroup  int
	Key       any
	Window    any
	Timestamp Timestamp
	Value     any
}

// TriggerEntry is the trigger state of a GroupByKey for a key and window;
// the state is opaque (Undecoded without a coder).
type TriggerEntry struct {
	Transform string
	KeyGroup  int
	Key       any
	Window    any
	State     Undecoded
}

// SideInputEntry is a run of values of a side input in one window (of one
// key for a multimap side input, Key nil for an iterable one).
type SideInputEntry struct {
	Transform string
	SideInput string
	Window    any
	Key       any
	Values    any // []any, or Undecoded
}

// ParkedEntry is main input parked until the side input windows it reads
// are ready.
type ParkedEntry struct {
	Transform    string
	Need         Timestamp
	MinTimestamp Timestamp
	Elements     any // []any of WindowedValue, or Undecoded
}

// ResidualEntry is a residual restriction of a source: its position.
type ResidualEntry struct {
	Transform   string
	Restriction any // decoded with the source's restriction coder, if any
	Watermark   Timestamp
}

func (e *StateEntry) Owner() string      { return e.Transform }
func (e *TimerEntry) Owner() string      { return e.Transform }
func (e *GroupValueEntry) Owner() string { return e.Transform }
func (e *TriggerEntry) Owner() string    { return e.Transform }
func (e *SideInputEntry) Owner() string  { return e.Transform }
func (e *ParkedEntry) Owner() string     { return e.Transform }
func (e *ResidualEntry) Owner() string   { return e.Transform }

// MarshalJSON implements json.Marshaler:
// {"kind":"state","transform","state","key_group","key","window",
// ["user_key"|"sort_key",]"value"}.
func (e *StateEntry) MarshalJSON() ([]byte, error) {
	o := object{{"kind", "state"}, {"transform", e.Transform}, {"state", e.State}, {"key_group", e.KeyGroup}, {"key", e.Key}, {"window", e.Window}}
	switch e.Kind {
	case savepoint.KindMap, savepoint.KindSet:
		o = append(o, member{"user_key", e.UserKey})
	case savepoint.KindOrderedList:
		o = append(o, member{"sort_key", e.SortKey})
	}
	if e.Kind != savepoint.KindSet {
		o = append(o, member{"value", e.Value})
	}
	return o.MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"timer","transform",
// "timer","key_group","key","window","tag","fire","hold","domain"}.
func (e *TimerEntry) MarshalJSON() ([]byte, error) {
	return object{{"kind", "timer"}, {"transform", e.Transform}, {"timer", e.Timer}, {"key_group", e.KeyGroup}, {"key", e.Key},
		{"window", e.Window}, {"tag", e.Tag}, {"fire", e.Fire}, {"hold", e.Hold}, {"domain", e.Domain}}.MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"group_value",
// "transform","key_group","key","window","timestamp","value"}.
func (e *GroupValueEntry) MarshalJSON() ([]byte, error) {
	return object{{"kind", "group_value"}, {"transform", e.Transform}, {"key_group", e.KeyGroup}, {"key", e.Key},
		{"window", e.Window}, {"timestamp", e.Timestamp}, {"value", e.Value}}.MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"trigger","transform",
// "key_group","key","window","state"}.
func (e *TriggerEntry) MarshalJSON() ([]byte, error) {
	return object{{"kind", "trigger"}, {"transform", e.Transform}, {"key_group", e.KeyGroup}, {"key", e.Key},
		{"window", e.Window}, {"state", e.State}}.MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"side_input",
// "transform","side_input","window",["key",]"values"}.
func (e *SideInputEntry) MarshalJSON() ([]byte, error) {
	o := object{{"kind", "side_input"}, {"transform", e.Transform}, {"side_input", e.SideInput}, {"window", e.Window}}
	if e.Key != nil {
		o = append(o, member{"key", e.Key})
	}
	return append(o, member{"values", e.Values}).MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"parked","transform",
// "need","min_timestamp","elements"}.
func (e *ParkedEntry) MarshalJSON() ([]byte, error) {
	return object{{"kind", "parked"}, {"transform", e.Transform}, {"need", e.Need}, {"min_timestamp", e.MinTimestamp},
		{"elements", e.Elements}}.MarshalJSON()
}

// MarshalJSON implements json.Marshaler: {"kind":"residual","transform",
// "restriction","watermark"}.
func (e *ResidualEntry) MarshalJSON() ([]byte, error) {
	return object{{"kind", "residual"}, {"transform", e.Transform}, {"restriction", e.Restriction}, {"watermark", e.Watermark}}.MarshalJSON()
}

// transformEntry decodes a record of transform t, if f selects it.
func (r *Reader) transformEntry(t savepoint.Transform, rec savepoint.Record, f Filter) (Entry, bool) {
	switch rec := rec.(type) {
	case *savepoint.StateRecord:
		if !f.id(rec.StateID) {
			return nil, false
		}
		spec := find(t.States, func(s savepoint.StateSpec) bool { return s.ID == rec.StateID })
		e := &StateEntry{Transform: t.UniqueName, State: rec.StateID, Kind: spec.Kind, KeyGroup: rec.KeyGroup,
			Key: r.dec.Decode(spec.KeyCoder, rec.Key), Window: r.dec.Decode(spec.WindowCoder, rec.Window), SortKey: rec.SortKey}
		if spec.UserKeyCoder != "" {
			e.UserKey = r.dec.Decode(spec.UserKeyCoder, rec.UserKey)
		}
		if spec.ValueCoder != "" {
			e.Value = r.dec.Decode(spec.ValueCoder, rec.Value)
		} else if rec.Value != nil {
			e.Value = Undecoded{Bytes: rec.Value}
		}
		return e, true
	case *savepoint.TimerRecord:
		if !f.id(rec.Family) {
			return nil, false
		}
		fam := find(t.Timers, func(tf savepoint.TimerFamily) bool { return tf.ID == rec.Family })
		return &TimerEntry{Transform: t.UniqueName, Timer: rec.Family, KeyGroup: rec.KeyGroup,
			Key: r.dec.Decode(fam.KeyCoder, rec.Key), Window: r.dec.Decode(fam.WindowCoder, rec.Window),
			Tag: string(rec.Tag), Fire: Timestamp(rec.Fire), Hold: Timestamp(rec.Hold), Domain: rec.Domain}, true
	}
	return nil, false
}

// find returns the first element of xs that match selects (the metadata
// declares what every record names), or the zero value.
func find[T any](xs []T, match func(T) bool) T {
	var zero T
	if i := slices.IndexFunc(xs, match); i >= 0 {
		return xs[i]
	}
	return zero
}

// groupEntry decodes a record of GroupByKey g, if f selects it.
func (r *Reader) groupEntry(g savepoint.Group, rec savepoint.Record, f Filter) (Entry, bool) {
	if f.State != "" {
		return nil, false
	}
	switch rec := rec.(type) {
	case *savepoint.GroupValueRecord:
		return &GroupValueEntry{Transform: g.UniqueName, KeyGroup: rec.KeyGroup, Key: r.dec.Decode(g.KeyCoder, rec.Key),
			Window: r.dec.Decode(g.WindowCoder, rec.Window), Timestamp: Timestamp(rec.Timestamp), Value: r.dec.Decode(g.ValueCoder, rec.Value)}, true
	case *savepoint.TriggerRecord:
		return &TriggerEntry{Transform: g.UniqueName, KeyGroup: rec.KeyGroup, Key: r.dec.Decode(g.KeyCoder, rec.Key),
			Window: r.dec.Decode(g.WindowCoder, rec.Window), State: Undecoded{Bytes: rec.State}}, true
	}
	return nil, false
}

// sideEntry decodes a record of the side inputs of s, if f selects it.
func (r *Reader) sideEntry(s savepoint.SideInputs, rec savepoint.Record, f Filter) (Entry, bool) {
	switch rec := rec.(type) {
	case *savepoint.SideInputRecord:
		if !f.id(rec.SideInput) {
			return nil, false
		}
		spec := find(s.Inputs, func(in savepoint.SideInputSpec) bool { return in.ID == rec.SideInput })
		e := &SideInputEntry{Transform: s.UniqueName, SideInput: rec.SideInput, Window: r.dec.Decode(spec.WindowCoder, rec.Window),
			Values: r.dec.DecodeAll(spec.ValueCoder, rec.Values)}
		if spec.Kind == savepoint.SideMultimap {
			e.Key = r.dec.Decode(spec.KeyCoder, rec.Key)
		}
		return e, true
	case *savepoint.ParkedRecord:
		if f.State != "" {
			return nil, false
		}
		return &ParkedEntry{Transform: s.UniqueName, Need: Timestamp(rec.Need), MinTimestamp: Timestamp(rec.MinTimestamp),
			Elements: r.dec.DecodeAll(s.InputCoder, rec.Elements)}, true
	}
	return nil, false
}

// sourceEntry decodes a record of source s, if f selects it.
func (r *Reader) sourceEntry(s savepoint.Source, rec savepoint.Record, f Filter) (Entry, bool) {
	res, ok := rec.(*savepoint.ResidualRecord)
	if !ok || f.State != "" {
		return nil, false
	}
	e := &ResidualEntry{Transform: s.UniqueName, Watermark: Timestamp(res.Watermark)}
	if s.RestrictionCoder != "" {
		e.Restriction = r.dec.Decode(s.RestrictionCoder, res.Restriction)
	} else {
		e.Restriction = Undecoded{Bytes: res.Restriction}
	}
	return e, true
}
