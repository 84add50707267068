package state

import (
	"bytes"
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
)

// The cell comparer orders keys as bytes, like Pebble's default, and tells
// Pebble where a bag or multimap key's cell ends (Split): the prefix is
// everything up to the end of the cell's last component (for a multimap,
// of its map key), the suffix the 8-byte append slot after it. Pebble's
// bloom filters are then built over cells, and a read of one cell
// (Bundle.scan with a cell prefix, SeekPrefixGE) skips every sstable that
// holds nothing of that cell: after a checkpoint has flushed the memtable
// into L0, a read no longer seeks in every L0 table.
//
// Other keys are their own prefix. The rule reads the key's structure
// (key group below MaxKeyGroups, space byte, components), so it suits the
// DBs of SDK subtasks; a GroupBuffer's keys (prefix | key group | ...)
// could be read as cells by it, so a DB with one keeps the default
// comparer. A DB created with one comparer must be opened with the same
// (Pebble records its name): DBs restored from checkpoints taken before
// this comparer existed are opened with the default one (Open).
var cellComparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Name = "weir.cells.v1"
	c.Split = cellSplit
	return &c
}()

// cellSplit is the cell comparer's Split: the length of a bag or multimap
// key's cell (with its map key), else len(k).
func cellSplit(k []byte) int {
	if len(k) < 3 || binary.BigEndian.Uint16(k) >= MaxKeyGroups {
		return len(k)
	}
	var comps int
	switch k[2] {
	case spaceBag:
		comps = 4 // transform, state ID, window, key
	case spaceMap:
		comps = 5 // ... and the map key
	default:
		return len(k)
	}
	i := 3
	for ; comps > 0; comps-- {
		// A component ends at 00 01; inside one, 00 is always followed by FF.
		for {
			j := bytes.IndexByte(k[i:], 0)
			if j < 0 || i+j+1 >= len(k) {
				return len(k)
			}
			i += j + 2
			if k[i-1] == 0x01 {
				break
			}
		}
	}
	return i
}
