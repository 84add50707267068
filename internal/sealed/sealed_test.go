package sealed

import (
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	type doc struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
		X       int    `json:"x"`
	}
	good := Seal([]byte(`{"format":"f","version":2,"x":7}`))
	for _, tc := range []struct {
		name    string
		data    []byte
		problem Problem
		msg     string // "" for no error
	}{
		{"ok", good, 0, ""},
		{"empty", nil, Corrupt, "empty"},
		{"truncated", good[:len(good)-3], Corrupt, "truncated"},
		{"flipped byte", []byte(strings.Replace(string(good), `"x":7`, `"x":8`, 1)), Corrupt, "checksum mismatch"},
		{"other format", Seal([]byte(`{"format":"g","version":1}`)), OtherFormat, `format "g"`},
		{"newer", Seal([]byte(`{"format":"f","version":3}`)), Newer, "version 3"},
		{"version 0", Seal([]byte(`{"format":"f","version":0}`)), Corrupt, "invalid format version 0"},
		{"unknown field", Seal([]byte(`{"format":"f","version":1,"y":1}`)), Corrupt, "unknown field"},
		{"trailing value", Seal([]byte(`{"format":"f","version":1} {}`)), Corrupt, "after top-level value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var d doc
			v, e := Decode(tc.data, "f", 2, &d)
			if tc.msg == "" {
				if e != nil || v != 2 || d.X != 7 {
					t.Fatalf("Decode = %d, %v, %+v", v, e, d)
				}
				return
			}
			if e == nil || e.Problem != tc.problem || !strings.Contains(e.Msg, tc.msg) {
				t.Fatalf("Decode: %+v, want problem %d and %q", e, tc.problem, tc.msg)
			}
		})
	}
}
