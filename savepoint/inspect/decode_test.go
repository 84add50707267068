package inspect_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/savepoint/inspect"
	. "github.com/weir-runner/weir/savepoint/inspect/inspecttest"
)

func TestDecode(t *testing.T) {
	d := inspect.NewDecoder(Pipeline(t).GetComponents().GetCoders())
	for _, tc := range []struct {
		name, coder string
		b           []byte
		want        string
	}{
		{"string", Str, Enc(t, S("héllo")), `"héllo"`},
		{"varint", Int, Enc(t, I(math.MinInt64)), `-9223372036854775808`},
		{"kv", KV, Enc(t, S("k"), I(7)), `{"key":"k","value":7}`},
		{"bytes", Bytes, Enc(t, Raw(2, 0xff, 0)), `"/wA="`},
		{"double NaN", Dbl, Enc(t, F(math.NaN())), `"NaN"`},
		{"bool", Bool, Enc(t, B(true)), `true`},
		{"bool byte 2", Bool, []byte{2}, `{"base64":"Ag==","coder":"beam:coder:bool:v1","error":"bool byte 2"}`},
		{"iterable", Iter, Enc(t, Raw(0, 0, 0, 2), I(1), I(-1)), `[1,-1]`},
		{"iterable in chunks", Iter, Enc(t, Raw(0xff, 0xff, 0xff, 0xff), Raw(1), I(4), Raw(2), I(5), I(6), Raw(0)), `[4,5,6]`},
		{"iterable, negative count", Iter, Enc(t, Raw(0xff, 0xff, 0xff, 0xfe)), `{"base64":"/////g==","coder":"beam:coder:iterable:v1","error":"iterable count -2"}`},
		{"nullable null", NullStr, []byte{0}, `null`},
		{"nullable", NullStr, Enc(t, Raw(1), S("x")), `"x"`},
		{"global window", GW, nil, `"global"`},
		{"interval window", IW, Enc(t, Window(-5, 10)), `{"start":-5,"end":10}`},
		{"global window, bytes after", GW, []byte{1}, `{"base64":"AQ==","coder":"beam:coder:global_window:v1","error":"1 bytes after the value"}`},
		{"truncated string", Str, []byte{5, 'a'}, `{"base64":"BWE=","coder":"beam:coder:string_utf8:v1","error":"truncated"}`},
		{"invalid UTF-8", Str, []byte{1, 0xff}, `{"base64":"Af8=","coder":"beam:coder:string_utf8:v1","error":"invalid UTF-8 in a string"}`},
		{"SDK coder", Custom, []byte("xyz"), `{"base64":"eHl6","coder":"beam:go:coder:custom:v1"}`},
		{"SDK coder, length-prefixed", LPCustom, []byte("\x03xyz"), `{"base64":"eHl6","coder":"beam:go:coder:custom:v1"}`},
		{"missing coder", "nope", []byte{1}, `{"base64":"AQ==","coder":"coder nope","error":"coder \"nope\" is not in the pipeline"}`},
		{"cyclic coder", Loop, []byte{1, 2, 3}, `{"base64":"AQID","coder":"beam:coder:kv:v1","error":"coders nested deeper than 64"}`},
		{"row of more fields than its schema", Row, []byte{20, 0}, `{"base64":"FAA=","coder":"beam:coder:row:v1","error":"row of 20 fields, its schema has 9"}`},
		{"row of fewer fields (appended later)", Row, Enc(t, I(1), I(0), S("o")), `{"ID":"o","Qty":null,"Price":null,"Tags":null,"Note":null,"Attrs":null,"Paid":null,"Raw":null,"Units":null}`},
		{"row field truncated", Row, Enc(t, I(2), I(0), S("o")), `{"base64":"AgABbw==","coder":"beam:coder:row:v1","error":"field \"Qty\": malformed varint"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(d.Decode(tc.coder, tc.b))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Decode(%s, %x) = %s, want %s", tc.coder, tc.b, got, tc.want)
			}
		})
	}
}

// FuzzDecodeValue decodes arbitrary bytes with every coder of the sample
// pipeline: no panic, and what it returns prints as JSON.
func FuzzDecodeValue(f *testing.F) {
	for _, recs := range Records(f) {
		for _, r := range recs {
			switch r := r.(type) {
			case *savepoint.StateRecord:
				f.Add(r.Value)
			case *savepoint.GroupValueRecord:
				f.Add(r.Value)
			case *savepoint.ParkedRecord:
				f.Add(r.Elements)
			case *savepoint.ResidualRecord:
				f.Add(r.Restriction)
			}
		}
	}
	f.Add(RowOf(f, Order{ID: "x", Tags: []string{"t"}, Attrs: map[string]int32{"a": 1}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})
	d := inspect.NewDecoder(Pipeline(f).GetComponents().GetCoders())
	ids := []string{Str, Int, KV, GW, IW, Row, Custom, LPCustom, KVCustom, Bytes, Dbl, Bool, Iter, NullStr, WV, Loop}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, id := range ids {
			for _, v := range []any{d.Decode(id, b), d.DecodeAll(id, b)} {
				out, err := json.Marshal(v)
				if err != nil {
					t.Fatalf("coder %s: %x: %v", id, b, err)
				}
				if len(out) > 64*len(b)+1024 && !strings.Contains(string(out), "error") {
					t.Fatalf("coder %s: %d bytes decode to %d bytes of JSON", id, len(b), len(out))
				}
			}
		}
	})
}
