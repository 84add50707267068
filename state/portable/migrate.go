package portable

import (
	"bytes"
	"fmt"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// Migrating state values on import (Target.Migrate). A StateRecord holds
// what one append wrote, and an SDK may write one value in several
// appends (the Go SDK's row encoder writes a struct field by field), so a
// value cannot be migrated record by record: the records of one cell (and
// map key) are gathered, in order, and their concatenation, whole values
// one after another, is migrated and written as one append when the next
// record belongs elsewhere or the import closes. An ordered list entry is
// a whole value: migrated on its own. A set has no values.

// gathered are the values of one cell (and map key) waiting for their
// migration.
type gathered struct {
	owner   Owner
	cell    state.Cell
	kind    savepoint.StateKind
	userKey []byte
	data    []byte
	migrate func([]byte) ([]byte, error)
}

// migration is the migration of the values of state stateID of
// transform name, nil if there is none.
func (im *Importer) migration(name, stateID string, kind savepoint.StateKind) func([]byte) ([]byte, error) {
	if im.t.Migrate == nil || kind == savepoint.KindSet {
		return nil
	}
	return im.t.Migrate(name, stateID)
}

// migrated writes r, a record of cell c of owner o whose values migrate
// with m: an ordered list entry at once, other values gathered.
func (im *Importer) migrated(o Owner, c state.Cell, kind savepoint.StateKind, r *savepoint.StateRecord, m func([]byte) ([]byte, error)) error {
	if kind == savepoint.KindOrderedList {
		v, err := m(r.Value)
		if err != nil {
			return fmt.Errorf("state %q of %s: migrating an entry: %w", c.StateID, o, err)
		}
		return im.put(o, c, kind, nil, r.SortKey, v)
	}
	if im.pend == nil {
		// Records may be read over once Import returns: keep copies.
		c.Window, c.Key = bytes.Clone(c.Window), bytes.Clone(c.Key)
		im.pend = &gathered{owner: o, cell: c, kind: kind, userKey: bytes.Clone(r.UserKey), migrate: m}
	}
	im.pend.data = append(im.pend.data, r.Value...)
	return nil
}

// flushUnless migrates and writes the gathered values unless rec, of
// owner o, continues them (rec nil: the import ends).
func (im *Importer) flushUnless(o Owner, rec savepoint.Record) error {
	p := im.pend
	if p == nil {
		return nil
	}
	if r, ok := rec.(*savepoint.StateRecord); ok && o == p.owner && r.StateID == p.cell.StateID && r.KeyGroup == p.cell.KeyGroup &&
		bytes.Equal(r.Key, p.cell.Key) && bytes.Equal(r.Window, p.cell.Window) && bytes.Equal(r.UserKey, p.userKey) {
		return nil
	}
	im.pend = nil
	v, err := p.migrate(p.data)
	if err != nil {
		return fmt.Errorf("state %q of %s: migrating the value of key %x: %w", p.cell.StateID, p.owner, p.cell.Key, err)
	}
	return im.put(p.owner, p.cell, p.kind, p.userKey, 0, v)
}
