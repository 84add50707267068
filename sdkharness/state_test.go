package sdkharness

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// TestPagedUserStateRead: a bag larger than a page is read once and
// answered in pages that follow continuation tokens; a write between pages
// makes the next page read the bag again.
func TestPagedUserStateRead(t *testing.T) {
	h := &memState{bags: map[string][]byte{}}
	s := NewStateServer("b1", h, 8)
	key := &fnpb.StateKey{Type: &fnpb.StateKey_BagUserState_{BagUserState: &fnpb.StateKey_BagUserState{
		TransformId: "t", UserStateId: "s", Window: []byte("w"), Key: []byte("k")}}}
	req := func(r any) *fnpb.StateRequest {
		q := &fnpb.StateRequest{StateKey: key}
		switch r := r.(type) {
		case []byte:
			q.Request = &fnpb.StateRequest_Get{Get: &fnpb.StateGetRequest{ContinuationToken: r}}
		case string:
			q.Request = &fnpb.StateRequest_Append{Append: &fnpb.StateAppendRequest{Data: []byte(r)}}
		}
		return q
	}
	do := func(q *fnpb.StateRequest) *fnpb.StateResponse {
		t.Helper()
		r := s.HandleState(q)
		if r.GetError() != "" {
			t.Fatal(r.GetError())
		}
		return r
	}
	do(req(strings.Repeat("0123456789", 5)))
	readAll := func(between func()) string {
		var got []byte
		var token []byte
		for {
			r := do(req(token))
			got = append(got, r.GetGet().GetData()...)
			if token = r.GetGet().GetContinuationToken(); len(token) == 0 {
				return string(got)
			}
			if between != nil {
				between()
				between = nil
			}
		}
	}
	if got := readAll(nil); got != strings.Repeat("0123456789", 5) || h.reads != 1 {
		t.Errorf("read %q in %d reads of the bag, want 50 bytes in 1", got, h.reads)
	}
	h.reads = 0
	if got := readAll(func() { do(req("X")) }); got != strings.Repeat("0123456789", 5)[:8]+strings.Repeat("0123456789", 5)[8:]+"X" || h.reads != 2 {
		t.Errorf("read %q in %d reads with a write between pages, want the new bag's rest in 2", got, h.reads)
	}
	bad := s.HandleState(req([]byte("bogus")))
	if bad.GetError() == "" {
		t.Error("bad continuation token: no error")
	}
}

func TestPage(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), harness.DefaultPageBytes/5+3) // 2 chunks + 30 bytes
	tests := []struct {
		name      string
		data      []byte
		token     string
		wantStart int
		wantEnd   int
		wantNext  string
		wantErr   bool
	}{
		{"empty", nil, "", 0, 0, "", false},
		{"small", data[:10], "", 0, 10, "", false},
		{"exactly one chunk", data[:harness.DefaultPageBytes], "", 0, harness.DefaultPageBytes, "", false},
		{"first of three", data, "", 0, harness.DefaultPageBytes, fmt.Sprint(harness.DefaultPageBytes), false},
		{"second", data, fmt.Sprint(harness.DefaultPageBytes), harness.DefaultPageBytes, 2 * harness.DefaultPageBytes, fmt.Sprint(2 * harness.DefaultPageBytes), false},
		{"last", data, fmt.Sprint(2 * harness.DefaultPageBytes), 2 * harness.DefaultPageBytes, len(data), "", false},
		{"odd offset", data, "7", 7, 7 + harness.DefaultPageBytes, fmt.Sprint(7 + harness.DefaultPageBytes), false},
		{"token at the end", data, fmt.Sprint(len(data)), len(data), len(data), "", false},
		{"token past the end", data, fmt.Sprint(len(data) + 1), 0, 0, "", true},
		{"negative", data, "-5", 0, 0, "", true},
		{"not a number", data, "next", 0, 0, "", true},
		{"overflow", data, "99999999999999999999999", 0, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := page(tc.data, []byte(tc.token), harness.DefaultPageBytes)
			if tc.wantErr {
				if err == nil {
					t.Errorf("no error for token %q", tc.token)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.GetGet().GetData(); !bytes.Equal(got, tc.data[tc.wantStart:tc.wantEnd]) {
				t.Errorf("data is %d bytes, want [%d:%d]", len(got), tc.wantStart, tc.wantEnd)
			}
			if got := string(r.GetGet().GetContinuationToken()); got != tc.wantNext {
				t.Errorf("next token %q, want %q", got, tc.wantNext)
			}
		})
	}
}
