package checkpoint

import "testing"

func TestParseCheckpointObject(t *testing.T) {
	for _, tc := range []struct {
		name string
		id   int64
		rest string
		ok   bool
	}{
		{"j/chk-12/_metadata", 12, "_metadata", true},
		{"j/chk-1/s-0/MANIFEST-000001", 1, "s-0/MANIFEST-000001", true},
		{"j/chk-01/_metadata", 0, "", false},
		{"j/chk-0/_metadata", 0, "", false},
		{"j/chk--1/_metadata", 0, "", false},
		{"j/chk-x/_metadata", 0, "", false},
		{"j/chk-3", 0, "", false},
		{"jj/chk-3/_metadata", 0, "", false},
		{"j/shared/abc.sst", 0, "", false},
	} {
		id, rest, ok := parseCheckpointObject("j", tc.name)
		if id != tc.id || rest != tc.rest || ok != tc.ok {
			t.Errorf("parseCheckpointObject(%q) = %d, %q, %v; want %d, %q, %v", tc.name, id, rest, ok, tc.id, tc.rest, tc.ok)
		}
	}
}

func TestEscapeComponent(t *testing.T) {
	seen := map[string]string{}
	for _, s := range []string{"s1", "s1-0", "s1%2D0", "a/b", "a.b", ".", "..", "-", "%", "é", ""} {
		e := escapeComponent(s)
		if prev, dup := seen[e]; dup {
			t.Errorf("%q and %q both escape to %q", prev, s, e)
		}
		seen[e] = s
		if e != "" && (e[0] == '.' || checkLocalName(e+"-0") != nil) {
			t.Errorf("escapeComponent(%q) = %q is not a plain name", s, e)
		}
	}
}
