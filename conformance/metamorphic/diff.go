package metamorphic

import (
	"fmt"
	"strings"
)

// SinkDiff is how one sink's committed records differ from the model's.
type SinkDiff struct {
	Sink           string
	Want, Got      int      // records (with multiplicity)
	Missing, Extra []string // "record ×n", sorted
}

// Diff compares got with want, sink by sink; nil if they are equal.
func Diff(want, got map[string]map[string]int) []SinkDiff {
	var out []SinkDiff
	for _, sink := range sortedKeys(want) {
		w, g := want[sink], got[sink]
		d := SinkDiff{Sink: sink}
		for _, r := range sortedKeys(w) {
			d.Want += w[r]
			if n := w[r] - g[r]; n > 0 {
				d.Missing = append(d.Missing, fmt.Sprintf("%s ×%d", r, n))
			}
		}
		for _, r := range sortedKeys(g) {
			d.Got += g[r]
			if n := g[r] - w[r]; n > 0 {
				d.Extra = append(d.Extra, fmt.Sprintf("%s ×%d", r, n))
			}
		}
		if len(d.Missing)+len(d.Extra) > 0 {
			out = append(out, d)
		}
	}
	for _, sink := range sortedKeys(got) {
		if _, ok := want[sink]; !ok {
			out = append(out, SinkDiff{Sink: sink + " (not in the model)"})
		}
	}
	return out
}

// FormatDiff renders diffs, at most n lines of each list.
func FormatDiff(diffs []SinkDiff, n int) string {
	var b strings.Builder
	list := func(what string, l []string) {
		if len(l) == 0 {
			return
		}
		fmt.Fprintf(&b, "    %s (%d distinct):\n", what, len(l))
		for i, r := range l {
			if i == n {
				fmt.Fprintf(&b, "      ... %d more\n", len(l)-n)
				break
			}
			fmt.Fprintf(&b, "      %s\n", r)
		}
	}
	for _, d := range diffs {
		fmt.Fprintf(&b, "  sink %s: want %d records, committed %d\n", d.Sink, d.Want, d.Got)
		list("missing", d.Missing)
		list("extra", d.Extra)
	}
	return b.String()
}
