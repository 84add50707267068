package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/mtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/timers"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// myStruct has a Go custom coder (JSON); myRow is encoded with Beam's row coder.
type myStruct struct {
	Name  string
	Count int
}

type myRow struct {
	Name  string
	Score float64
	Tags  []string
}

func encMyStruct(v myStruct) ([]byte, error) { return json.Marshal(v) }
func decMyStruct(b []byte) (myStruct, error) {
	var v myStruct
	err := json.Unmarshal(b, &v)
	return v, err
}

func init() {
	runtime.RegisterType(reflect.TypeOf(myStruct{}))
	runtime.RegisterType(reflect.TypeOf(myRow{}))
	runtime.RegisterFunction(encMyStruct)
	runtime.RegisterFunction(decMyStruct)
}

func customCoder(t testing.TB) *coder.Coder {
	t.Helper()
	rt := reflect.TypeOf(myStruct{})
	cc, err := coder.NewCustomCoder("myStruct", rt, encMyStruct, decMyStruct)
	if err != nil {
		t.Fatal(err)
	}
	return &coder.Coder{Kind: coder.Custom, T: typex.New(rt), Custom: cc}
}

func rowCoder() *coder.Coder { return coder.NewR(typex.New(reflect.TypeOf(myRow{}))) }

func kvC(k, v *coder.Coder) *coder.Coder { return coder.NewKV([]*coder.Coder{k, v}) }

// marshal turns a Beam coder into a proto coder map and its ID.
func marshal(t testing.TB, c *coder.Coder) (map[string]*pipepb.Coder, string) {
	t.Helper()
	ids, m, err := graphx.MarshalCoders([]*coder.Coder{c})
	if err != nil {
		t.Fatalf("MarshalCoders(%v): %v", c, err)
	}
	return m, ids[0]
}

// build marshals c with Beam and builds it with this package.
func build(t testing.TB, c *coder.Coder) *Coder {
	t.Helper()
	m, id := marshal(t, c)
	wc, err := Build(m, id)
	if err != nil {
		t.Fatalf("Build(%v): %v", c, err)
	}
	return wc
}

// beamEncode encodes fv with Beam's element encoder for c.
func beamEncode(t testing.TB, c *coder.Coder, fv *exec.FullValue) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := exec.MakeElementEncoder(c).Encode(fv, &buf); err != nil {
		t.Fatalf("Beam encode %v with %v: %v", fv, c, err)
	}
	return buf.Bytes()
}

func iw(start, end int64) window.IntervalWindow {
	return window.IntervalWindow{Start: mtime.FromMilliseconds(start), End: mtime.FromMilliseconds(end)}
}

// coderCase is a Beam coder and a value it encodes.
type coderCase struct {
	name string
	c    *coder.Coder
	v    *exec.FullValue
}

func fv(elm any) *exec.FullValue { return &exec.FullValue{Elm: elm} }

func kvFV(k, v any) *exec.FullValue { return &exec.FullValue{Elm: k, Elm2: v} }

func coderCases(t testing.TB) []coderCase {
	str, vi, by := coder.NewString(), coder.NewVarInt(), coder.NewBytes()
	big := bytes.Repeat([]byte("x"), 300)
	gw, iwc := coder.NewGlobalWindow(), coder.NewIntervalWindow()
	early := typex.PaneInfo{IsFirst: true, Timing: typex.PaneEarly, Index: 0, NonSpeculativeIndex: -1}
	late := typex.PaneInfo{IsLast: true, Timing: typex.PaneLate, Index: 7, NonSpeculativeIndex: 3}
	return []coderCase{
		{"bytes/empty", by, fv([]byte{})},
		{"bytes/short", by, fv([]byte("hello"))},
		{"bytes/300", by, fv(big)},
		{"string", str, fv("héllo wörld")},
		{"string/empty", str, fv("")},
		{"varint/0", vi, fv(int64(0))},
		{"varint/300", vi, fv(int64(300))},
		{"varint/-1", vi, fv(int64(-1))},
		{"varint/max", vi, fv(int64(1<<63 - 1))},
		{"bool/true", coder.NewBool(), fv(true)},
		{"bool/false", coder.NewBool(), fv(false)},
		{"double", coder.NewDouble(), fv(3.25)},
		{"interval_window", coder.NewIntervalWindowCoder(), fv(iw(-10, 5000))},
		{"kv/string-varint", kvC(str, vi), kvFV("key", int64(42))},
		{"kv/bytes-kv", kvC(by, kvC(coder.NewBool(), coder.NewDouble())), kvFV(big, &exec.FullValue{Elm: true, Elm2: 2.5})},
		{"kv/bool-double", kvC(coder.NewBool(), coder.NewDouble()), kvFV(false, 1.5)},
		{"iterable/string", coder.NewI(str), fv([]string{"a", "bb", "", "ccc"})},
		{"iterable/empty", coder.NewI(vi), fv([]int64{})},
		{"iterable/double", coder.NewI(coder.NewDouble()), fv([]float64{1, 2, 3})},
		{"iterable/iterable", coder.NewI(coder.NewI(str)), fv([][]string{{"a"}, {}, {"b", "c"}})},
		{"nullable/nil", coder.NewN(str), fv(nil)},
		{"nullable/set", coder.NewN(str), fv("x")},
		{"custom", customCoder(t), fv(myStruct{Name: "n", Count: 3})},
		{"kv/string-custom", kvC(str, customCoder(t)), kvFV("k", myStruct{Name: "v", Count: 9})},
		{"windowed/global", coder.NewW(str, gw), &exec.FullValue{Elm: "x", Timestamp: 17, Windows: window.SingleGlobalWindow, Pane: typex.NoFiringPane()}},
		{"windowed/interval", coder.NewW(kvC(str, vi), iwc), &exec.FullValue{Elm: "k", Elm2: int64(1), Timestamp: -5, Windows: []typex.Window{iw(0, 10), iw(5, 15)}, Pane: late}},
		{"timer/set", coder.NewT(str, iwc), fv(exec.TimerRecv{Key: fv("k"), Windows: []typex.Window{iw(0, 60000)}, Pane: early,
			TimerMap: timers.TimerMap{Family: "f", Tag: "tag", FireTimestamp: 59999, HoldTimestamp: 100}})},
		{"timer/clear", coder.NewT(vi, gw), fv(exec.TimerRecv{Key: fv(int64(7)), Windows: window.SingleGlobalWindow,
			TimerMap: timers.TimerMap{Clear: true}})},
	}
}
