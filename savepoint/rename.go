package savepoint

import "strings"

// Renaming. A savepoint names its state by transform unique name; a
// changed pipeline may call the same transforms by other names. A mapping
// of old to new unique-name prefixes (Dataflow's --transform_name_mapping,
// `weir savepoint rewrite --rename`) says how: a name equal to a key, or
// under it ("key/..."), takes the longest matching key's value in place of
// that prefix; "" as the value drops the state.

// NameUnder reports whether unique name n is prefix or is under it
// (prefix followed by '/').
func NameUnder(n, prefix string) bool {
	return n == prefix || strings.HasPrefix(n, prefix+"/")
}

// Rename returns the name that mapping gives unique name n (n itself if no
// key matches), and false if the mapping drops n's state (the longest
// matching key maps to "").
func Rename(mapping map[string]string, n string) (string, bool) {
	best, found := "", false
	for k := range mapping {
		if NameUnder(n, k) && (!found || len(k) > len(best)) {
			best, found = k, true
		}
	}
	if !found {
		return n, true
	}
	v := mapping[best]
	if v == "" {
		return "", false
	}
	return v + n[len(best):], true
}
