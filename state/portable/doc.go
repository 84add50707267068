// Package portable translates a subtask's state between weir's Pebble
// layout (package state) and savepoint records (package savepoint). It
// owns that translation and nothing else: it knows neither the engine nor
// Beam's SDK. Export reads an open state.DB (e.g. opened from a local
// checkpoint) and hands records to a sink with their Owner (section and
// unique name), each owner's keyed records in ascending key-group order,
// so the engine can write one data file per (owner, key-group range) with
// savepoint.Writer.File. An Importer writes records into a fresh DB for a
// key-group range [lo, hi): a restore at another parallelism (rescale)
// imports the records of its range and skips the others.
//
// # Key spaces and records
//
//	'u' bag cells (bag, value, combining)  StateRecord per append slot, in
//	                                       slot order (a value rewritten at
//	                                       slot zero comes first); no UserKey,
//	                                       SortKey 0; Value is what one append
//	                                       wrote (one or more whole values)
//	'm' multimap cells (map, set)          StateRecord per append slot, by map
//	                                       key (UserKey) then slot order
//	'o' ordered lists                      StateRecord per entry, by SortKey,
//	                                       ties in append order; Value without
//	                                       the sort key
//	'T' timer lookup (fire time, hold)     TimerRecord: domain 1 event, 2
//	    + 't' index value (encoded timer)  processing; Pane is what follows the
//	                                       hold in the encoded timer, which is
//	                                       rebuilt from the record on import
//	GroupBuffer (prefix "g")               GroupValueRecord per buffered
//	                                       element; a window-first buffer
//	                                       (Group.WindowFirst) is turned back
//	                                       into (key, window)
//	triggered GroupByKey: cells and        values cell: GroupValueRecord per
//	timers under transform "g"             value (length prefix removed,
//	                                       Timestamp NoTimestamp); other cells
//	                                       and timers: one TriggerRecord each,
//	                                       State a piece: 'c' then the fields
//	                                       state ID, value; or 't' then domain,
//	                                       family, tag, fire, hold, encoded
//	                                       (fields: uvarint length | bytes)
//	'v','w' side inputs (key group 0xFFFF) SideInputRecord per stored run
//	'p' parked input                       ParkedRecord per parked run
//
// The kind of a StateRecord's state (bag or ordered list, map or set) is
// not in the record: Target.StateKind gives it on import (from the
// savepoint's metadata or the new pipeline). A multimap side input is told
// from an iterable one the same way (Target.SideInput).
//
// # Not exported
//
//   - The timer index 't' and holds 'h': rebuilt from the lookup entries
//     by SetTimer (the index value, the encoded timer, is read to export
//     the pane).
//   - Fixed timers (PutFixedTimer: window expiry), which have only an index
//     entry, and lookup entries of the runner's own domains (above 3) of
//     user transforms: the engine sets expiry timers again in
//     Target.OnUserState, called once per imported cell.
//   - Multimap side input keys 'k' and the parked hold index 'q': rebuilt
//     by AddMulti and Park.
//   - The sequence mark 'S' and the GroupBuffer's counter: they order
//     appends, and the import draws fresh sequence numbers in record order.
//
// # What the engine adds
//
//   - Source.Names: transform ID → unique name, from the checkpoint
//     metadata's TransformNames; Target.Transforms the reverse for the new
//     pipeline (after --transform_name_mapping). A name with no target
//     fails the import with ErrNotRestored unless AllowNonRestored, which
//     skips and counts it in the Report.
//   - Source.Group/Target.Group: the GroupByKey of a DB, its buffer layout
//     and whether it is triggered (from the windowing strategy).
//   - Side input indexes and parked input owners; which subtask takes which
//     parked record (Target.Parked): parked input is main input, so each
//     record must go to exactly one subtask, while side inputs go to all.
//   - Pending input and deferred residuals of a subtask's taskState, which
//     are not in Pebble, and source residuals (ResidualRecord).
//   - Target.Migrate: the re-encoding of a state's values whose coder
//     changed compatibly (a Go struct's row schema that gained or lost
//     fields); the importer gives it each cell's values whole (migrate.go).
package portable
