package savepoint

import "testing"

// TestRename: the longest matching prefix wins, a prefix matches whole
// name components only, "" drops.
func TestRename(t *testing.T) {
	mapping := map[string]string{"a": "x", "a/b": "y", "c": "", "d/e": "f/g"}
	for _, tc := range []struct {
		in, want string
		kept     bool
	}{
		{"a", "x", true},
		{"a/z", "x/z", true},
		{"a/b", "y", true},
		{"a/b/c", "y/c", true},
		{"a/bc", "x/bc", true},
		{"ab", "ab", true},
		{"c/d", "", false},
		{"c", "", false},
		{"d/e/h", "f/g/h", true},
		{"d", "d", true},
		{"z", "z", true},
	} {
		got, kept := Rename(mapping, tc.in)
		if got != tc.want || kept != tc.kept {
			t.Errorf("Rename(%q) = %q, %v; want %q, %v", tc.in, got, kept, tc.want, tc.kept)
		}
	}
	if got, kept := Rename(nil, "a/b"); got != "a/b" || !kept {
		t.Errorf("Rename with no mapping = %q, %v", got, kept)
	}
}
