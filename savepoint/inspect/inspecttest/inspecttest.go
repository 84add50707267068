// Package inspecttest writes a sample savepoint for the tests of
// savepoint/inspect and `weir savepoint`: a pipeline proto with standard
// coders, the schema row of a Go struct (from Beam's own schema package,
// values from its row encoder), an interval window coder and a coder only
// the SDK knows, and records of every kind encoded with them.
package inspecttest

import (
	"bytes"
	"context"
	"io"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx/schema"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint"
)

// Order is the Go struct whose rows the sample holds.
type Order struct {
	ID    string
	Qty   int64
	Price float64
	Tags  []string
	Note  *string
	Attrs map[string]int32
	Paid  bool
	Raw   []byte
	Units uint64
}

// Coder IDs of the sample pipeline.
const (
	Str, Int, KV, GW, IW, Row, Custom, LPCustom, KVCustom = "str", "int", "kv", "gw", "iw", "row", "custom", "lp_custom", "kv_custom"
	Bytes, Dbl, Bool, Iter, NullStr, WV, Loop             = "bytes", "dbl", "bool", "iter", "nullable_str", "wv", "loop"
)

// CustomURN is the URN of the coder only the SDK knows.
const CustomURN = "beam:go:coder:custom:v1"

func spec(urn string, payload []byte, comps ...string) *pipepb.Coder {
	return &pipepb.Coder{Spec: &pipepb.FunctionSpec{Urn: urn, Payload: payload}, ComponentCoderIds: comps}
}

// Pipeline returns the sample pipeline proto.
func Pipeline(t testing.TB) *pipepb.Pipeline {
	t.Helper()
	s, err := schema.FromType(reflect.TypeOf(Order{}))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return &pipepb.Pipeline{Components: &pipepb.Components{Coders: map[string]*pipepb.Coder{
		Str:      spec("beam:coder:string_utf8:v1", nil),
		Int:      spec("beam:coder:varint:v1", nil),
		KV:       spec("beam:coder:kv:v1", nil, Str, Int),
		GW:       spec("beam:coder:global_window:v1", nil),
		IW:       spec("beam:coder:interval_window:v1", nil),
		Row:      spec("beam:coder:row:v1", payload),
		Custom:   spec(CustomURN, []byte("opaque")),
		LPCustom: spec("beam:coder:length_prefix:v1", nil, Custom),
		KVCustom: spec("beam:coder:kv:v1", nil, Str, LPCustom),
		Bytes:    spec("beam:coder:bytes:v1", nil),
		Dbl:      spec("beam:coder:double:v1", nil),
		Bool:     spec("beam:coder:bool:v1", nil),
		Iter:     spec("beam:coder:iterable:v1", nil, Int),
		NullStr:  spec("beam:coder:nullable:v1", nil, Str),
		WV:       spec("beam:coder:windowed_value:v1", nil, Str, IW),
		Loop:     spec("beam:coder:kv:v1", nil, Loop, Loop),
	}}}
}

// Enc returns what the encoders write.
func Enc(t testing.TB, fs ...func(io.Writer) error) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, f := range fs {
		if err := f(&b); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// S, I, F, B and Raw encode a string, a varint, a double, a bool and raw
// bytes as Beam does.
func S(s string) func(io.Writer) error {
	return func(w io.Writer) error { return coder.EncodeStringUTF8(s, w) }
}
func I(i int64) func(io.Writer) error {
	return func(w io.Writer) error { return coder.EncodeVarInt(i, w) }
}
func F(f float64) func(io.Writer) error {
	return func(w io.Writer) error { return coder.EncodeDouble(f, w) }
}
func B(b bool) func(io.Writer) error {
	return func(w io.Writer) error { return coder.EncodeBool(b, w) }
}
func Raw(b ...byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

// Window encodes the interval window [start, end) in Beam millis.
func Window(start, end int64) func(io.Writer) error {
	return func(w io.Writer) error {
		if err := coder.EncodeEventTime(typex.EventTime(end), w); err != nil {
			return err
		}
		return coder.EncodeVarUint64(uint64(end-start), w)
	}
}

// Time encodes a timestamp.
func Time(ms int64) func(io.Writer) error {
	return func(w io.Writer) error { return coder.EncodeEventTime(typex.EventTime(ms), w) }
}

// RowOf encodes o with the Go SDK's row encoder.
func RowOf(t testing.TB, o Order) []byte {
	t.Helper()
	enc, err := (&coder.RowEncoderBuilder{}).Build(reflect.TypeOf(Order{}))
	if err != nil {
		t.Fatal(err)
	}
	return Enc(t, func(w io.Writer) error { return enc(o, w) })
}

// Metadata returns the sample's metadata without files.
func Metadata() *savepoint.Metadata {
	return &savepoint.Metadata{
		Created:        time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC),
		MaxParallelism: 8,
		Parallelism:    2,
		Transforms: []savepoint.Transform{{
			UniqueName: "count/Stateful",
			States: []savepoint.StateSpec{
				{ID: "total", Kind: savepoint.KindValue, KeyCoder: Str, WindowCoder: IW, ValueCoder: Int},
				{ID: "orders", Kind: savepoint.KindBag, KeyCoder: Str, WindowCoder: GW, ValueCoder: Row},
				{ID: "seen", Kind: savepoint.KindMap, KeyCoder: Str, WindowCoder: GW, ValueCoder: KV, UserKeyCoder: Str},
				{ID: "ids", Kind: savepoint.KindSet, KeyCoder: Str, WindowCoder: GW, UserKeyCoder: Int},
				{ID: "list", Kind: savepoint.KindOrderedList, KeyCoder: Str, WindowCoder: GW, ValueCoder: Custom},
			},
			Timers: []savepoint.TimerFamily{{ID: "flush", Domain: savepoint.EventTime, KeyCoder: Str, WindowCoder: IW}},
		}},
		Groups: []savepoint.Group{{UniqueName: "count/GBK", KeyCoder: Str, ValueCoder: KVCustom, WindowCoder: IW}},
		SideInputs: []savepoint.SideInputs{{
			UniqueName: "count/Join",
			Inputs: []savepoint.SideInputSpec{
				{ID: "totals", Kind: savepoint.SideIterable, ValueCoder: Int, WindowCoder: GW},
				{ID: "lookup", Kind: savepoint.SideMultimap, KeyCoder: Str, ValueCoder: Dbl, WindowCoder: GW},
			},
			InputCoder: WV,
		}},
		Sources:       []savepoint.Source{{UniqueName: "read/Source", RestrictionCoder: Iter}},
		FiredImpulses: []string{"read/Impulse"},
	}
}

// Records returns the sample's records by section.
func Records(t testing.TB) map[savepoint.Section][]savepoint.Record {
	note := "rush"
	k := func(s string) []byte { return Enc(t, S(s)) }
	return map[savepoint.Section][]savepoint.Record{
		savepoint.SectionTransforms: {
			&savepoint.StateRecord{KeyGroup: 1, Key: k("alice"), Window: Enc(t, Window(0, 60000)), StateID: "total", Value: Enc(t, I(-42))},
			&savepoint.StateRecord{KeyGroup: 1, Key: k("alice"), StateID: "orders", Value: RowOf(t, Order{ID: "o1", Qty: 3, Price: 9.5,
				Tags: []string{"a", "b"}, Note: &note, Attrs: map[string]int32{"x": 7}, Paid: true, Raw: []byte{0xff}, Units: math.MaxUint64})},
			&savepoint.StateRecord{KeyGroup: 1, Key: k("alice"), StateID: "orders", Value: RowOf(t, Order{ID: "o2"})},
			&savepoint.StateRecord{KeyGroup: 2, Key: k("bob"), StateID: "seen", UserKey: k("m1"), Value: Enc(t, S("v"), I(300))},
			&savepoint.StateRecord{KeyGroup: 2, Key: k("bob"), StateID: "ids", UserKey: Enc(t, I(5))},
			&savepoint.StateRecord{KeyGroup: 2, Key: k("bob"), StateID: "list", SortKey: 1700000000000, Value: []byte("opaque!")},
			&savepoint.StateRecord{KeyGroup: 2, Key: k("bob"), Window: Enc(t, Window(0, 60000)), StateID: "total", Value: Enc(t, I(1), Raw(9))},
			&savepoint.TimerRecord{KeyGroup: 3, Key: k("carol"), Window: Enc(t, Window(60000, 120000)), Family: "flush", Tag: []byte("t1"),
				Domain: savepoint.EventTime, Fire: 119999, Hold: 60000},
		},
		savepoint.SectionGroups: {
			&savepoint.GroupValueRecord{KeyGroup: 4, Key: k("dave"), Window: Enc(t, Window(0, 60000)), Timestamp: 1500,
				Value: Enc(t, S("x"), I(2), Raw(0xca, 0xfe))},
			&savepoint.TriggerRecord{KeyGroup: 4, Key: k("dave"), Window: Enc(t, Window(0, 60000)), State: []byte{1, 2}},
		},
		savepoint.SectionSideInputs: {
			&savepoint.SideInputRecord{SideInput: "totals", Values: Enc(t, I(1), I(2), I(3))},
			&savepoint.SideInputRecord{SideInput: "lookup", Key: k("eur"), Values: Enc(t, F(1.5), F(math.Inf(1)))},
			&savepoint.ParkedRecord{Need: 60000, MinTimestamp: 10, Elements: Enc(t,
				Time(10), Raw(0, 0, 0, 1), Window(0, 60000), Raw(0x0f), S("e1"),
				Time(20), Raw(0, 0, 0, 1), Window(0, 60000), Raw(0x0f), S("e2"))},
		},
		savepoint.SectionSources: {
			&savepoint.ResidualRecord{Restriction: Enc(t, Raw(0, 0, 0, 2), I(10), I(20)), Watermark: -9223372036854775},
		},
	}
}

// Write writes the sample savepoint of job "cards", ID "sp1", in st and
// returns its directory.
func Write(t testing.TB, st storage.Storage) string {
	t.Helper()
	return WriteJob(t, st, "cards", "sp1", time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
}

// WriteJob writes the sample as savepoint id of job, created at created.
func WriteJob(t testing.TB, st storage.Storage, job, id string, created time.Time) string {
	t.Helper()
	ctx := context.Background()
	w, err := savepoint.Create(ctx, st, job, id)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := proto.Marshal(Pipeline(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pipeline(ctx, pb); err != nil {
		t.Fatal(err)
	}
	m := Metadata()
	m.Created = created
	recs := Records(t)
	file := func(sec savepoint.Section, owner string, kgs *savepoint.KeyGroupRange) []savepoint.File {
		rw, err := w.File(ctx, sec, owner, kgs)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[sec] {
			if err := rw.Write(r); err != nil {
				t.Fatal(err)
			}
		}
		f, err := rw.Close()
		if err != nil {
			t.Fatal(err)
		}
		return []savepoint.File{f}
	}
	m.Transforms[0].Files = file(savepoint.SectionTransforms, "count/Stateful", &savepoint.KeyGroupRange{Start: 0, End: 8})
	m.Groups[0].Files = file(savepoint.SectionGroups, "count/GBK", &savepoint.KeyGroupRange{Start: 0, End: 8})
	m.SideInputs[0].Files = file(savepoint.SectionSideInputs, "count/Join", nil)
	m.Sources[0].Files = file(savepoint.SectionSources, "read/Source", nil)
	if err := w.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	return w.Dir()
}
