package testlog

import "testing"

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	var b Buffer
	b.Write([]byte("x\n"))
	b.Write([]byte("y\n"))
	if b.String() != "x\ny\n" {
		t.Errorf("Buffer holds %q", b.String())
	}
}
