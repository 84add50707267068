package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"testing"
	"time"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/wire"
)

// testCoders returns a coder map with the leaf coders the tests use:
// "str" (string_utf8), "gw" (global window), "iw" (interval window) and
// "kv" (kv(str, str)).
func testCoders() map[string]*pipepb.Coder {
	coders := map[string]*pipepb.Coder{}
	coders["str"] = &pipepb.Coder{Spec: &pipepb.FunctionSpec{Urn: wire.URNStringUTF8}}
	coders["gw"] = &pipepb.Coder{Spec: &pipepb.FunctionSpec{Urn: wire.URNGlobalWindow}}
	coders["iw"] = &pipepb.Coder{Spec: &pipepb.FunctionSpec{Urn: wire.URNIntervalWindow}}
	coders["kv"] = &pipepb.Coder{Spec: &pipepb.FunctionSpec{Urn: wire.URNKV}, ComponentCoderIds: []string{"str", "str"}}
	return coders
}

// mustWV builds the windowed_value coder id of coders.
func mustWV(t testing.TB, coders map[string]*pipepb.Coder, id string) wire.WVCoder {
	t.Helper()
	c, err := wire.Build(coders, id)
	if err != nil {
		t.Fatal(err)
	}
	wv, err := wire.NewWV(c)
	if err != nil {
		t.Fatal(err)
	}
	return wv
}

// kvWV returns the wire coder of windowed KV<string, string> in windows of
// the window coder winID ("gw" or "iw").
func kvWV(t testing.TB, winID string) wire.WVCoder {
	t.Helper()
	coders := testCoders()
	return mustWV(t, coders, wire.AddWindowedValue(coders, "kv", winID))
}

// str encodes s with string_utf8 in the nested context.
func str(s string) []byte {
	return append(wire.AppendVarint(nil, uint64(len(s))), s...)
}

// kvBytes encodes KV<string, string>.
func kvBytes(k, v string) []byte { return append(str(k), str(v)...) }

// iwin encodes the interval window [start, end).
func iwin(start, end int64) []byte { return wire.AppendIntervalWindow(nil, start, end) }

// kvElem is a windowed KV<string, string> with the default pane.
func kvElem(ts int64, k, v string, windows ...[]byte) []byte {
	return wire.AppendWindowedValue(nil, ts, windows, nil, kvBytes(k, v))
}

// readStr decodes one nested string_utf8 from the front of b.
func readStr(t testing.TB, b []byte) (string, []byte) {
	t.Helper()
	l, n, err := wire.ReadVarint(b)
	if err != nil || uint64(len(b)-n) < l {
		t.Fatalf("bad string encoding %x: %v", b, err)
	}
	return string(b[n : n+int(l)]), b[n+int(l):]
}

// readStrs decodes a concatenation of nested strings.
func readStrs(t testing.TB, b []byte) []string {
	t.Helper()
	out := []string{}
	for len(b) > 0 {
		var s string
		s, b = readStr(t, b)
		out = append(out, s)
	}
	return out
}

// readStrIterable decodes an iterable of strings with a known count.
func readStrIterable(t testing.TB, b []byte) []string {
	t.Helper()
	if len(b) < 4 {
		t.Fatalf("iterable too short: %x", b)
	}
	n := int(int32(binary.BigEndian.Uint32(b)))
	out := readStrs(t, b[4:])
	if len(out) != n {
		t.Fatalf("iterable says %d elements, holds %d", n, len(out))
	}
	return out
}

// readGroup decodes a grouped KV<string, iterable<string>> element: its
// key, its values sorted (a GroupByKey promises no order) and its pane.
func readGroup(t testing.TB, wv wire.WVCoder, e wire.Element) (string, []string, wire.Pane, error) {
	k, v, err := wv.Elem.SplitKV(e.Value)
	if err != nil {
		return "", nil, wire.Pane{}, err
	}
	key, _ := readStr(t, k)
	vals := readStrIterable(t, v)
	sort.Strings(vals)
	p, _, err := wire.ReadPane(e.Pane)
	return key, vals, p, err
}

// winString renders an encoded window of either kind.
func winString(t testing.TB, w []byte) string {
	t.Helper()
	if len(w) == 0 {
		return "global"
	}
	s, e, err := wire.ReadIntervalWindow(w)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("[%d,%d)", s, e)
}

// testCtx is a context that ends the test instead of letting it hang.
func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// drain returns everything queued in in without waiting.
func drain(in inbox) []msg {
	var out []msg
	for {
		select {
		case m := <-in:
			out = append(out, m)
		default:
			return out
		}
	}
}
