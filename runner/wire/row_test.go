package wire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx/schema"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

// Versions of a struct kept in state: v2 reorders, adds and removes
// fields, and its nested struct gained one.
type innerV1 struct {
	A int64
}

type innerV2 struct {
	A int64
	B string
}

type rowV1 struct {
	Name    string
	Count   int64
	Tags    []string
	Gone    float64
	Inner   innerV1
	Ptr     *int32
	Weights map[string]float32
}

type rowV2 struct {
	Count   int64
	Name    string
	Tags    []string
	Inner   innerV2
	Ptr     *int32
	Weights map[string]float32
	// New fields start at their zero values.
	Extra   float64
	Small   uint16
	Flag    bool
	Raw     []byte
	List    []int64
	Lookup  map[string]int64
	Nested  innerV1
	Maybe   *string
	Octet   uint8
	Integer int
}

func rowSchema(t testing.TB, v any) *pipepb.Schema {
	t.Helper()
	s, err := schema.FromType(reflect.TypeOf(v))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// goRows encodes values with the Go SDK's row coder, one after another.
func goRows(t testing.TB, vs ...any) []byte {
	t.Helper()
	var out []byte
	for _, v := range vs {
		out = append(out, beamEncode(t, coder.NewR(typex.New(reflect.TypeOf(v))), fv(v))...)
	}
	return out
}

// goDecodeRows decodes rows of v's type with the Go SDK's row coder.
func goDecodeRows(t testing.TB, v any, b []byte) []any {
	t.Helper()
	dec := exec.MakeElementDecoder(coder.NewR(typex.New(reflect.TypeOf(v))))
	r := bytes.NewReader(b)
	var out []any
	for r.Len() > 0 {
		x, err := dec.Decode(r)
		if err != nil {
			t.Fatalf("the Go SDK cannot decode the migrated rows: %v", err)
		}
		out = append(out, x.Elm)
	}
	return out
}

func TestRowMigration(t *testing.T) {
	seven := int32(7)
	v1 := rowV1{Name: "k1", Count: 3, Tags: []string{"a", "bc"}, Gone: 2.5, Inner: innerV1{A: -4}, Ptr: &seven, Weights: map[string]float32{"w": 1.5}}
	v1nil := rowV1{Name: "", Count: -1}
	for _, tc := range []struct {
		name     string
		from, to any
		in       []any
		want     []any
		added    string
		removed  string
	}{
		{
			name: "added, removed, reordered, nested", from: rowV1{}, to: rowV2{},
			in: []any{v1, v1nil},
			want: []any{
				rowV2{Count: 3, Name: "k1", Tags: []string{"a", "bc"}, Inner: innerV2{A: -4}, Ptr: &seven, Weights: map[string]float32{"w": 1.5}},
				rowV2{Count: -1},
			},
			added:   "Inner.B Extra Small Flag Raw List Lookup Nested Maybe Octet Integer",
			removed: "Gone",
		},
		{
			name: "nested removed", from: innerV2{}, to: innerV1{},
			in: []any{innerV2{A: 9, B: "x"}}, want: []any{innerV1{A: 9}},
			removed: "B",
		},
		{
			name: "unchanged", from: rowV1{}, to: rowV1{},
			in: []any{v1}, want: []any{v1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewRowMigration(rowSchema(t, tc.from), rowSchema(t, tc.to))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(m.Added, " "); got != tc.added {
				t.Errorf("added %q, want %q", got, tc.added)
			}
			if got := strings.Join(m.Removed, " "); got != tc.removed {
				t.Errorf("removed %q, want %q", got, tc.removed)
			}
			out, err := m.Migrate(goRows(t, tc.in...))
			if err != nil {
				t.Fatal(err)
			}
			// The bytes the Go SDK writes for tc.want, and it reads them.
			if want := goRows(t, tc.want...); !bytes.Equal(out, want) {
				t.Errorf("migrated to %x, want %x (%+v)", out, want, tc.want)
			}
			if got := goDecodeRows(t, tc.to, out); len(got) != len(tc.want) {
				t.Errorf("decoded %d rows, want %d", len(got), len(tc.want))
			}
		})
	}
}

// A row with fewer fields than its schema (fields appended later, as
// Java writes them) reads the missing ones as null: migrated, they get
// their zero values.
func TestRowMigrationShortRow(t *testing.T) {
	from := rowSchema(t, innerV2{})
	m, err := NewRowMigration(from, from)
	if err != nil {
		t.Fatal(err)
	}
	short := []byte{1, 0, 0x12} // one field, no nulls, A = 18
	out, err := m.Migrate(short)
	if err != nil {
		t.Fatal(err)
	}
	if got := goDecodeRows(t, innerV2{}, out); !reflect.DeepEqual(got, []any{innerV2{A: 18}}) {
		t.Fatalf("got %+v", got)
	}
}

func TestRowMigrationRefused(t *testing.T) {
	type changed struct {
		Name  string
		Count string // was int64
	}
	for _, tc := range []struct {
		name     string
		from, to *pipepb.Schema
		want     string
	}{
		{"type changed", rowSchema(t, rowV1{}), rowSchema(t, changed{}), "field Count changed type from int64 to string"},
		{"no zero", rowSchema(t, innerV1{}), func() *pipepb.Schema {
			s := proto.Clone(rowSchema(t, innerV1{})).(*pipepb.Schema)
			s.Fields = append(s.Fields, &pipepb.Field{Name: "When", Type: &pipepb.FieldType{TypeInfo: &pipepb.FieldType_LogicalType{
				LogicalType: &pipepb.LogicalType{Urn: "beam:logical_type:micros_instant:v1", Representation: &pipepb.FieldType{TypeInfo: &pipepb.FieldType_AtomicType{AtomicType: pipepb.AtomicType_INT64}}}}}})
			return s
		}(), "new field When: logical type \"beam:logical_type:micros_instant:v1\" has no zero value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRowMigration(tc.from, tc.to)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestSplitRowCorrupt(t *testing.T) {
	s := rowSchema(t, rowV1{})
	good := goRows(t, rowV1{Name: "n", Tags: []string{"x"}, Weights: map[string]float32{"a": 1}})
	if _, n, err := SplitRow(s, good); err != nil || n != len(good) {
		t.Fatalf("SplitRow(good) = %d, %v; want %d, nil", n, err, len(good))
	}
	for i := range len(good) {
		if _, _, err := SplitRow(s, good[:i]); !errors.Is(err, ErrTruncated) {
			t.Errorf("SplitRow of the first %d of %d bytes: err = %v, want ErrTruncated", i, len(good), err)
		}
	}
	for _, b := range [][]byte{
		{99, 0},      // more fields than the schema
		{7, 2, 0, 0}, // a null bitmap longer than 7 fields need
		{3, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, // Count: a varint of 70 bits
	} {
		if _, _, err := SplitRow(s, b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("SplitRow(%x): err = %v, want ErrCorrupt", b, err)
		}
	}
}

func TestSchemaString(t *testing.T) {
	got := SchemaString(rowSchema(t, rowV1{}))
	want := "{Name string, Count int64, Tags []string, Gone double, Inner {A int64}, Ptr *int32, Weights map[string]float}"
	if got != want {
		t.Fatalf("SchemaString = %q, want %q", got, want)
	}
}

func FuzzMigrateRow(f *testing.F) {
	from, to := rowSchema(f, rowV1{}), rowSchema(f, rowV2{})
	m, err := NewRowMigration(from, to)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(goRows(f, rowV1{Name: "k", Tags: []string{"t"}, Weights: map[string]float32{"w": 2}}))
	f.Add([]byte{7, 1, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) {
		fields, n, err := SplitRow(from, data)
		if err != nil {
			return
		}
		if n < 0 || n > len(data) || len(fields) != len(from.GetFields()) {
			t.Fatalf("SplitRow(%x) = %d fields, %d bytes", data, len(fields), n)
		}
		out, err := m.Migrate(data[:n])
		if err != nil {
			t.Fatalf("a row SplitRow reads does not migrate: %v", err)
		}
		// What comes out is a row of the new schema, whole.
		if _, k, err := SplitRow(to, out); err != nil || k != len(out) {
			t.Fatalf("migrated %x to %x: not one row of the new schema (%d bytes, %v)", data[:n], out, k, err)
		}
	})
}
