package portable

import (
	"bytes"
	"fmt"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// Owner is who a record belongs to in a savepoint: the section of the
// data file and the owner's unique name, as savepoint.Writer.File takes
// them.
type Owner struct {
	Section savepoint.Section
	Name    string
}

func (o Owner) String() string { return fmt.Sprintf("%s %q", o.Section, o.Name) }

// Group describes the GroupByKey whose state a DB holds.
type Group struct {
	// Name is the GroupByKey's unique name.
	Name string
	// Prefix is the prefix of its GroupBuffer (the engine's "g").
	Prefix []byte
	// Transform is the transform ID under which a triggered GroupByKey
	// keeps its cells and timers (the engine's "g"); its values cell is
	// ValuesCell (the engine's "v").
	Transform  string
	ValuesCell string
	// WindowFirst says the buffer stores records window first
	// (state.WindowKey(maxTs, window), then the key): non-merging windows.
	WindowFirst bool
	// MaxTimestamp gives a window's max timestamp; required to import into
	// a window-first buffer.
	MaxTimestamp func(window []byte) (int64, error)
	// Triggered (import only) says the GroupByKey keeps its values in the
	// triggered cells instead of the GroupBuffer.
	Triggered bool
}

// Source says whose state a DB holds, for Export.
type Source struct {
	// Names maps the transform IDs used in state keys to unique names.
	Names func(transformID string) (uniqueName string, ok bool)
	// Group is the DB's GroupByKey, or nil.
	Group *Group
	// SideInput names the owner (the unique name of the transform that
	// reads it) and local name of the side input stored under index.
	SideInput func(index int) (owner, local string, ok bool)
	// Parked is the unique name of the transform whose parked main input
	// the DB holds; "" if it holds none.
	Parked string
}

// Export reads the state of key groups [lo, hi) of db, and the unkeyed
// state (side inputs, parked input), and gives it to sink as savepoint
// records with their owners: for each key group in order, the user state
// and timers of each transform and the values and trigger state of the
// GroupByKey; then the side input runs and parked runs. Every owner's
// keyed records come in ascending key-group order, so the engine can
// write one data file per owner and key-group range. Records own their
// bytes. An error from sink stops the export and is returned wrapped.
func Export(db *state.DB, lo, hi int, src Source, sink func(Owner, savepoint.Record) error) error {
	if lo < 0 || lo > hi || hi > state.MaxKeyGroups {
		return fmt.Errorf("portable: export: key groups [%d, %d) outside [0, %d)", lo, hi, state.MaxKeyGroups)
	}
	e := &exporter{db: db, src: src, sink: sink, names: map[string]string{}}
	if g := src.Group; g != nil {
		e.group = Owner{savepoint.SectionGroups, g.Name}
		e.buf = db.GroupBuffer(g.Prefix)
	}
	for kg := lo; kg < hi; kg++ {
		if err := e.keyGroup(kg); err != nil {
			return fmt.Errorf("portable: export: key group %d of %s: %w", kg, db.Dir(), err)
		}
	}
	if err := e.unkeyed(); err != nil {
		return fmt.Errorf("portable: export: %s: %w", db.Dir(), err)
	}
	return nil
}

type exporter struct {
	db    *state.DB
	src   Source
	sink  func(Owner, savepoint.Record) error
	names map[string]string // transform ID → unique name, as found
	group Owner
	buf   *state.GroupBuffer
}

// isGroup reports whether transform ID id is the GroupByKey's.
func (e *exporter) isGroup(id string) bool {
	return e.src.Group != nil && id == e.src.Group.Transform
}

// transform returns the owner of the state of transform ID id.
func (e *exporter) transform(id string) (Owner, error) {
	name, ok := e.names[id]
	if !ok {
		if e.src.Names != nil {
			name, ok = e.src.Names(id)
		}
		if !ok || name == "" {
			return Owner{}, fmt.Errorf("transform ID %q has no unique name", id)
		}
		e.names[id] = name
	}
	return Owner{savepoint.SectionTransforms, name}, nil
}

func (e *exporter) emit(o Owner, r savepoint.Record) error {
	if err := e.sink(o, r); err != nil {
		return fmt.Errorf("writing a record of %s: %w", o, err)
	}
	return nil
}

func (e *exporter) keyGroup(kg int) error {
	err := e.db.ScanUserState(kg, func(s state.UserStateEntry) error {
		c := s.Cell
		if e.isGroup(c.Transform) {
			return e.groupCell(s)
		}
		o, err := e.transform(c.Transform)
		if err != nil {
			return err
		}
		r := &savepoint.StateRecord{KeyGroup: kg, Key: bytes.Clone(c.Key), Window: bytes.Clone(c.Window),
			StateID: c.StateID, Value: bytes.Clone(s.Value)}
		switch s.Kind {
		case state.MapState:
			r.UserKey = bytes.Clone(s.MapKey)
		case state.OrderedState:
			r.SortKey = s.SortKey
		}
		return e.emit(o, r)
	})
	if err != nil {
		return err
	}
	err = e.db.ScanTimers(kg, func(t state.Timer) error {
		if e.isGroup(t.Transform) {
			return e.emit(e.group, &savepoint.TriggerRecord{KeyGroup: kg, Key: bytes.Clone(t.Key),
				Window: bytes.Clone(t.Window), State: timerPiece(t)})
		}
		if t.Domain > maxUserDomain {
			return nil // the runner's own (window expiry): rebuilt on import
		}
		o, err := e.transform(t.Transform)
		if err != nil {
			return err
		}
		d, err := toDomain(t.Domain)
		if err == nil {
			var pane []byte
			if pane, err = paneOf(t); err == nil {
				return e.emit(o, &savepoint.TimerRecord{KeyGroup: kg, Key: bytes.Clone(t.Key), Window: bytes.Clone(t.Window),
					Family: t.Family, Tag: bytes.Clone(t.Tag), Domain: d, Fire: t.Fire, Hold: t.Hold, Pane: pane})
			}
		}
		return fmt.Errorf("timer %s/%s: %w", t.Transform, t.Family, err)
	})
	if err != nil || e.buf == nil {
		return err
	}
	return e.buf.ScanKeys(kg, kg+1, func(_ int, first []byte, recs []state.Record) error {
		for _, rec := range recs {
			key, window := first, rec.Window
			if e.src.Group.WindowFirst {
				_, w, err := state.SplitWindowKey(first)
				if err != nil {
					return err
				}
				key, window = rec.Window, w
			}
			err := e.emit(e.group, &savepoint.GroupValueRecord{KeyGroup: kg, Key: bytes.Clone(key), Window: bytes.Clone(window),
				Timestamp: rec.Timestamp, Value: bytes.Clone(rec.Value)})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// groupCell exports an entry of a triggered GroupByKey's cells: a value
// as a GroupValueRecord, anything else as a piece of its trigger state.
func (e *exporter) groupCell(s state.UserStateEntry) error {
	c := s.Cell
	if s.Kind != state.BagState {
		return fmt.Errorf("GroupByKey %q holds %s state %q", e.group.Name, s.Kind, c.StateID)
	}
	key, window := bytes.Clone(c.Key), bytes.Clone(c.Window)
	if c.StateID == e.src.Group.ValuesCell {
		v, err := unframeValue(s.Value)
		if err != nil {
			return fmt.Errorf("GroupByKey %q: %w", e.group.Name, err)
		}
		return e.emit(e.group, &savepoint.GroupValueRecord{KeyGroup: c.KeyGroup, Key: key, Window: window,
			Timestamp: NoTimestamp, Value: bytes.Clone(v)})
	}
	return e.emit(e.group, &savepoint.TriggerRecord{KeyGroup: c.KeyGroup, Key: key, Window: window,
		State: cellPiece(c.StateID, s.Value)})
}

func (e *exporter) unkeyed() error {
	err := e.db.ScanSideInputs(func(r state.SideRun) error {
		var owner, local string
		ok := false
		if e.src.SideInput != nil {
			owner, local, ok = e.src.SideInput(r.Side)
		}
		if !ok || owner == "" || local == "" {
			return fmt.Errorf("side input %d has no owner and local name", r.Side)
		}
		rec := &savepoint.SideInputRecord{SideInput: local, Window: bytes.Clone(r.Window), Values: bytes.Clone(r.Values)}
		if r.Multimap {
			rec.Key = bytes.Clone(r.Key)
		}
		return e.emit(Owner{savepoint.SectionSideInputs, owner}, rec)
	})
	if err != nil {
		return err
	}
	return e.db.ScanParked(func(need, minTs int64, elements []byte) error {
		if e.src.Parked == "" {
			return fmt.Errorf("parked input without an owner")
		}
		return e.emit(Owner{savepoint.SectionSideInputs, e.src.Parked},
			&savepoint.ParkedRecord{Need: need, MinTimestamp: minTs, Elements: bytes.Clone(elements)})
	})
}
