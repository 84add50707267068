package wire

import (
	"bytes"
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

func cloneCoders(m map[string]*pipepb.Coder) map[string]*pipepb.Coder {
	out := map[string]*pipepb.Coder{}
	for id, c := range m {
		out[id] = proto.Clone(c).(*pipepb.Coder)
	}
	return out
}

func sameMaps(a, b map[string]*pipepb.Coder) bool {
	return maps.EqualFunc(a, b, func(x, y *pipepb.Coder) bool { return proto.Equal(x, y) })
}

// TestLengthPrefixRow rewrites KV<string, row> as Beam marshals it, checks
// that Build fails before and succeeds after, and that Beam, reading the
// rewritten coders, writes bytes this package splits correctly.
func TestLengthPrefixRow(t *testing.T) {
	kv := kvC(coder.NewString(), rowCoder())
	m, id := marshal(t, coder.NewW(kv, coder.NewIntervalWindow()))
	rowID := m[m[m[id].ComponentCoderIds[0]].ComponentCoderIds[1]]
	if rowID.GetSpec().GetUrn() != URNRow {
		t.Fatalf("Beam did not marshal a row coder: %v", m)
	}

	_, err := Build(m, id)
	if !errors.Is(err, ErrNotWalkable) || !strings.Contains(err.Error(), URNRow) || !strings.Contains(err.Error(), id) {
		t.Fatalf("Build before rewrite: err = %v; want ErrNotWalkable naming %q and the row URN", err, id)
	}

	before := cloneCoders(m)
	newID, err := LengthPrefixUnknown(m, id)
	if err != nil {
		t.Fatal(err)
	}
	if newID == id {
		t.Fatal("LengthPrefixUnknown changed nothing")
	}
	for oid, c := range before {
		if !proto.Equal(m[oid], c) {
			t.Errorf("existing coder %q was modified", oid)
		}
	}
	c, err := Build(m, newID)
	if err != nil {
		t.Fatalf("Build after rewrite: %v", err)
	}
	if got, want := c.String(), "windowed_value(kv(string_utf8, length_prefix(row)), interval_window)"; got != want {
		t.Errorf("rewritten coder = %s, want %s", got, want)
	}

	// Idempotent: the same ID again, no new coders; the result is stable.
	snapshot := cloneCoders(m)
	if again, err := LengthPrefixUnknown(m, id); err != nil || again != newID || !sameMaps(m, snapshot) {
		t.Errorf("second rewrite = %q, %v (map changed: %v)", again, err, !sameMaps(m, snapshot))
	}
	if again, err := LengthPrefixUnknown(m, newID); err != nil || again != newID || !sameMaps(m, snapshot) {
		t.Errorf("rewrite of the result = %q, %v", again, err)
	}

	// Beam reads the rewritten coders and encodes real values with them.
	bcs, err := graphx.UnmarshalCoders([]string{newID}, m)
	if err != nil {
		t.Fatalf("Beam cannot unmarshal the rewritten coders: %v", err)
	}
	row := myRow{Name: "r", Score: 1.5, Tags: []string{"a", "b"}}
	v := &exec.FullValue{Elm: "key", Elm2: row, Timestamp: 42, Windows: []typex.Window{iw(0, 100)}, Pane: typex.NoFiringPane()}
	enc := beamEncode(t, bcs[0], v)
	wv, err := NewWV(c)
	if err != nil {
		t.Fatal(err)
	}
	e, rest, err := wv.Next(enc)
	if err != nil || len(rest) != 0 {
		t.Fatalf("Next = %v with %d left", err, len(rest))
	}
	k, val, err := wv.Elem.SplitKV(e.Value)
	if err != nil {
		t.Fatal(err)
	}
	rowBytes := beamEncode(t, rowCoder(), fv(row))
	if want := beamEncode(t, coder.NewString(), fv("key")); !bytes.Equal(k, want) {
		t.Errorf("key = %x, want %x", k, want)
	}
	if want := append(AppendVarint(nil, uint64(len(rowBytes))), rowBytes...); !bytes.Equal(val, want) {
		t.Errorf("value = %x, want length-prefixed row %x", val, want)
	}
}

// TestLengthPrefixCustom checks the Go custom coder, which Beam already
// marshals as length_prefix(custom), and a bare custom coder.
func TestLengthPrefixCustom(t *testing.T) {
	m, id := marshal(t, kvC(coder.NewString(), customCoder(t)))
	before := cloneCoders(m)
	if got, err := LengthPrefixUnknown(m, id); err != nil || got != id || !sameMaps(m, before) {
		t.Errorf("already length-prefixed: got %q, %v (map changed: %v)", got, err, !sameMaps(m, before))
	}
	if _, err := Build(m, id); err != nil {
		t.Errorf("Build: %v", err)
	}

	// Strip Beam's prefix: the bare custom coder must be wrapped again.
	kv := m[id]
	lp := m[kv.ComponentCoderIds[1]]
	customID := lp.ComponentCoderIds[0]
	kv.ComponentCoderIds[1] = customID
	if _, err := Build(m, id); !errors.Is(err, ErrNotWalkable) || !strings.Contains(err.Error(), URNGoCustom) {
		t.Fatalf("Build of bare custom: err = %v", err)
	}
	newID, err := LengthPrefixUnknown(m, id)
	if err != nil {
		t.Fatal(err)
	}
	if newID != id+"_lp" || m[newID].ComponentCoderIds[1] != customID+"_lp" {
		t.Errorf("IDs: %q with components %v", newID, m[newID].ComponentCoderIds)
	}
	if !sameCoder(m[customID+"_lp"], newCoder(URNLengthPrefix, nil, []string{customID})) {
		t.Errorf("wrapper = %v", m[customID+"_lp"])
	}
	c, err := Build(m, newID)
	if err != nil {
		t.Fatal(err)
	}
	// The Go SDK reads length_prefix(custom) as the custom coder itself.
	bcs, err := graphx.UnmarshalCoders([]string{newID}, m)
	if err != nil {
		t.Fatal(err)
	}
	val := myStruct{Name: "v", Count: 2}
	enc := beamEncode(t, bcs[0], kvFV("k", val))
	if want := beamEncode(t, kvC(coder.NewString(), customCoder(t)), kvFV("k", val)); !bytes.Equal(enc, want) {
		t.Errorf("rewritten encoding %x differs from the original %x", enc, want)
	}
	if _, v, err := c.SplitKV(enc); err != nil || !bytes.Equal(v, beamEncode(t, customCoder(t), fv(val))) {
		t.Errorf("SplitKV value = %x, %v", v, err)
	}
}

func TestLengthPrefixUnknownURNs(t *testing.T) {
	m := map[string]*pipepb.Coder{
		"s":     newCoder(URNStringUTF8, nil, nil),
		"b":     newCoder(URNBytes, nil, nil),
		"gw":    newCoder(URNGlobalWindow, nil, nil),
		"iwin":  newCoder(URNIntervalWindow, nil, nil),
		"row":   newCoder(URNRow, []byte{1, 2}, nil),
		"sbi":   newCoder(URNStateBackedIterable, nil, []string{"s"}),
		"sk":    newCoder(URNShardedKey, nil, []string{"s"}),
		"odd":   newCoder("beam:coder:made_up:v1", nil, []string{"s"}),
		"oddw":  newCoder("beam:coder:custom_window:v1", nil, nil),
		"nul":   newCoder(URNNullable, nil, []string{"row"}),
		"it":    newCoder(URNIterable, nil, []string{"sbi"}),
		"kv":    newCoder(URNKV, nil, []string{"sk", "it"}),
		"kv2":   newCoder(URNKV, nil, []string{"odd", "nul"}),
		"tm":    newCoder(URNTimer, nil, []string{"row", "iwin"}),
		"wv":    newCoder(URNWindowedValue, nil, []string{"kv", "oddw"}),
		"pwv":   newCoder(URNParamWindowedValue, []byte{9}, []string{"kv2", "gw"}),
		"plain": newCoder(URNKV, nil, []string{"s", "b"}),
		"lp":    newCoder(URNLengthPrefix, nil, []string{"row"}),
		// A stranger already holds row's preferred ID.
		"row_lp": newCoder(URNBytes, nil, nil),
	}
	before := cloneCoders(m)
	for _, id := range []string{"plain", "lp", "s", "gw"} {
		if got, err := LengthPrefixUnknown(m, id); err != nil || got != id || !sameMaps(m, before) {
			t.Errorf("LengthPrefixUnknown(%q) = %q, %v; want it unchanged", id, got, err)
		}
	}
	want := map[string]string{
		"wv":  "windowed_value(kv(length_prefix(sharded_key), iterable(length_prefix(state_backed_iterable))), length_prefix(custom_window))",
		"pwv": "param_windowed_value(kv(length_prefix(made_up), nullable(length_prefix(row))), global_window)",
		"tm":  "timer(length_prefix(row), interval_window)",
	}
	for id, w := range want {
		if _, err := Build(m, id); !errors.Is(err, ErrNotWalkable) {
			t.Errorf("Build(%q) before rewrite: err = %v", id, err)
		}
		newID, err := LengthPrefixUnknown(m, id)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Build(m, newID)
		if err != nil {
			t.Fatalf("Build(%q) after rewrite: %v", newID, err)
		}
		if c.String() != w {
			t.Errorf("%s rewritten to %s, want %s", id, c, w)
		}
	}
	if !sameCoder(m["row_lp_2"], newCoder(URNLengthPrefix, nil, []string{"row"})) || m["row_lp"].GetSpec().GetUrn() != URNBytes {
		t.Errorf("collision handling: row_lp=%v row_lp_2=%v", m["row_lp"], m["row_lp_2"])
	}
}

func TestRewriteAndBuildErrors(t *testing.T) {
	m := map[string]*pipepb.Coder{
		"loop":    newCoder(URNKV, nil, []string{"s", "loop"}),
		"s":       newCoder(URNStringUTF8, nil, nil),
		"missing": newCoder(URNIterable, nil, []string{"nowhere"}),
		"arity":   newCoder(URNKV, nil, []string{"s"}),
		"lparity": newCoder(URNLengthPrefix, nil, nil),
	}
	for _, id := range []string{"loop", "missing", "arity", "absent"} {
		if _, err := LengthPrefixUnknown(m, id); err == nil || !strings.Contains(err.Error(), id) {
			t.Errorf("LengthPrefixUnknown(%q) err = %v", id, err)
		}
	}
	for _, id := range []string{"loop", "missing", "arity", "absent", "lparity"} {
		if _, err := Build(m, id); err == nil || !strings.Contains(err.Error(), id) {
			t.Errorf("Build(%q) err = %v", id, err)
		}
	}
}

func TestAddCoder(t *testing.T) {
	m, id := marshal(t, kvC(coder.NewString(), coder.NewVarInt()))
	kv := m[id]
	if got := AddCoder(m, URNKV, nil, kv.ComponentCoderIds...); got != id {
		t.Errorf("AddCoder of an existing kv = %q, want %q", got, id)
	}
	n := len(m)
	it := AddCoder(m, URNIterable, nil, kv.ComponentCoderIds[1])
	if it != "weir_iterable" || len(m) != n+1 {
		t.Errorf("AddCoder(iterable) = %q, map %d -> %d", it, n, len(m))
	}
	if again := AddCoder(m, URNIterable, nil, kv.ComponentCoderIds[1]); again != it || len(m) != n+1 {
		t.Errorf("AddCoder again = %q", again)
	}
	it2 := AddCoder(m, URNIterable, nil, kv.ComponentCoderIds[0])
	if it2 != "weir_iterable_2" {
		t.Errorf("second iterable = %q", it2)
	}
	gbk := AddCoder(m, URNKV, nil, kv.ComponentCoderIds[0], it)
	dbl := AddCoder(m, URNDouble, nil)
	gw := AddCoder(m, URNGlobalWindow, nil)
	wv := AddWindowedValue(m, gbk, gw)
	if again := AddWindowedValue(m, gbk, gw); again != wv {
		t.Errorf("AddWindowedValue not reused: %q vs %q", again, wv)
	}
	c, err := Build(m, wv)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.String(), "windowed_value(kv(string_utf8, iterable(varint)), global_window)"; got != want {
		t.Errorf("built %s, want %s", got, want)
	}
	if _, err := Build(m, dbl); err != nil {
		t.Error(err)
	}
	// Beam decodes what the planner built.
	bcs, err := graphx.UnmarshalCoders([]string{wv}, m)
	if err != nil {
		t.Fatalf("Beam cannot unmarshal planner coders: %v", err)
	}
	if bcs[0].Kind != coder.WindowedValue {
		t.Errorf("Beam sees %v", bcs[0])
	}
	// Payloads distinguish coders.
	p1 := AddCoder(m, URNRow, []byte{1})
	p2 := AddCoder(m, URNRow, []byte{2})
	if p1 == p2 {
		t.Error("coders with different payloads were merged")
	}
}
