package rewrite

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weir-runner/weir/savepoint"
)

// Options say what a rewrite changes. The zero Options copy the savepoint
// as it is (under a new ID).
type Options struct {
	// MaxParallelism is the new key-group count, in [1,
	// savepoint.MaxKeyGroups]; 0 keeps the source's.
	MaxParallelism int
	// Rename maps unique-name prefixes of the source to new ones (see
	// savepoint.Rename); every key must name some state of the source.
	// Values must not be empty: use Drop.
	Rename map[string]string
	// Drop lists what to remove: NAME (every owner named NAME or under
	// it, and a fired Impulse of that name) or NAME/ID (a state or timer
	// family of transform NAME), in the source's names.
	Drop []string
	// ID is the new savepoint's ID; "" derives one from the source's ID.
	ID string
}

// check refuses options that cannot mean anything, before the source is
// read.
func (o *Options) check() error {
	if o.MaxParallelism != 0 && (o.MaxParallelism < 1 || o.MaxParallelism > savepoint.MaxKeyGroups) {
		return fmt.Errorf("max parallelism %d outside [1, %d]: give the number of key groups the job will run with", o.MaxParallelism, savepoint.MaxKeyGroups)
	}
	for _, old := range slices.Sorted(maps.Keys(o.Rename)) {
		switch {
		case old == "":
			return fmt.Errorf("rename of an empty name to %q: give OLD=NEW with OLD a unique name (or prefix) of the savepoint", o.Rename[old])
		case o.Rename[old] == "":
			return fmt.Errorf("rename of %q to an empty name: to remove its state, drop it instead", old)
		case strings.HasSuffix(old, "/") || strings.HasSuffix(o.Rename[old], "/"):
			return fmt.Errorf("rename %q=%q: a unique-name prefix does not end with '/'", old, o.Rename[old])
		}
	}
	for _, d := range o.Drop {
		if d == "" || strings.HasSuffix(d, "/") {
			return fmt.Errorf("drop %q: give a unique name of the savepoint, or NAME/ID for one state or timer family", d)
		}
	}
	if o.ID != "" {
		if err := savepoint.CheckID(o.ID); err != nil {
			return err
		}
	}
	return nil
}

// ParseRename parses OLD=NEW (the --rename flag).
func ParseRename(s string) (old, new string, err error) {
	old, new, ok := strings.Cut(s, "=")
	if !ok || old == "" || new == "" {
		return "", "", fmt.Errorf("rename %q: want OLD=NEW, two unique names (or prefixes), neither empty", s)
	}
	return old, new, nil
}
