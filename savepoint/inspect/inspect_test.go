package inspect_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/weir-runner/weir/checkpoint/storage"
	"github.com/weir-runner/weir/savepoint/inspect"
	"github.com/weir-runner/weir/savepoint/inspect/inspecttest"
)

func fileStore(t testing.TB, dir string) storage.Storage {
	t.Helper()
	st, err := storage.NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lines returns the JSON lines of the entries f selects.
func lines(t *testing.T, r *inspect.Reader, f inspect.Filter) []string {
	t.Helper()
	var out []string
	for e, err := range r.Entries(t.Context(), f) {
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// golden is every record of the inspecttest sample, decoded.
var golden = []string{
	`{"kind":"state","transform":"count/Stateful","state":"total","key_group":1,"key":"alice","window":{"start":0,"end":60000},"value":-42}`,
	`{"kind":"state","transform":"count/Stateful","state":"orders","key_group":1,"key":"alice","window":"global","value":{"ID":"o1","Qty":3,"Price":9.5,"Tags":["a","b"],"Note":"rush","Attrs":[{"key":"x","value":7}],"Paid":true,"Raw":"/w==","Units":18446744073709551615}}`,
	`{"kind":"state","transform":"count/Stateful","state":"orders","key_group":1,"key":"alice","window":"global","value":{"ID":"o2","Qty":0,"Price":0,"Tags":null,"Note":null,"Attrs":null,"Paid":false,"Raw":null,"Units":0}}`,
	`{"kind":"state","transform":"count/Stateful","state":"seen","key_group":2,"key":"bob","window":"global","user_key":"m1","value":{"key":"v","value":300}}`,
	`{"kind":"state","transform":"count/Stateful","state":"ids","key_group":2,"key":"bob","window":"global","user_key":5}`,
	`{"kind":"state","transform":"count/Stateful","state":"list","key_group":2,"key":"bob","window":"global","sort_key":1700000000000,"value":{"base64":"b3BhcXVlIQ==","coder":"beam:go:coder:custom:v1"}}`,
	`{"kind":"state","transform":"count/Stateful","state":"total","key_group":2,"key":"bob","window":{"start":0,"end":60000},"value":{"base64":"AQk=","coder":"beam:coder:varint:v1","error":"1 bytes after the value"}}`,
	`{"kind":"timer","transform":"count/Stateful","timer":"flush","key_group":3,"key":"carol","window":{"start":60000,"end":120000},"tag":"t1","fire":{"millis":119999,"time":"1970-01-01T00:01:59.999Z"},"hold":{"millis":60000,"time":"1970-01-01T00:01:00Z"},"domain":"event"}`,
	`{"kind":"group_value","transform":"count/GBK","key_group":4,"key":"dave","window":{"start":0,"end":60000},"timestamp":{"millis":1500,"time":"1970-01-01T00:00:01.5Z"},"value":{"key":"x","value":{"base64":"yv4=","coder":"beam:go:coder:custom:v1"}}}`,
	`{"kind":"trigger","transform":"count/GBK","key_group":4,"key":"dave","window":{"start":0,"end":60000},"state":{"base64":"AQI="}}`,
	`{"kind":"side_input","transform":"count/Join","side_input":"totals","window":"global","values":[1,2,3]}`,
	`{"kind":"side_input","transform":"count/Join","side_input":"lookup","window":"global","key":"eur","values":[1.5,"+Inf"]}`,
	`{"kind":"parked","transform":"count/Join","need":{"millis":60000,"time":"1970-01-01T00:01:00Z"},"min_timestamp":{"millis":10,"time":"1970-01-01T00:00:00.01Z"},"elements":[{"timestamp":{"millis":10,"time":"1970-01-01T00:00:00.01Z"},"windows":[{"start":0,"end":60000}],"pane":{"first":true,"last":true,"timing":"unknown","index":0,"non_speculative_index":0},"value":"e1"},{"timestamp":{"millis":20,"time":"1970-01-01T00:00:00.02Z"},"windows":[{"start":0,"end":60000}],"pane":{"first":true,"last":true,"timing":"unknown","index":0,"non_speculative_index":0},"value":"e2"}]}`,
	`{"kind":"residual","transform":"read/Source","restriction":[10,20],"watermark":{"millis":-9223372036854775}}`,
}

func openSample(t *testing.T) (storage.Storage, string, *inspect.Reader) {
	t.Helper()
	st := fileStore(t, t.TempDir())
	dir := inspecttest.Write(t, st)
	r, err := inspect.Open(t.Context(), st, dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Verify(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st, dir, r
}

func TestEntries(t *testing.T) {
	_, _, r := openSample(t)
	for _, tc := range []struct {
		name   string
		filter inspect.Filter
		want   []int // indexes in golden
	}{
		{"all", inspect.Filter{}, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13}},
		{"transform", inspect.Filter{Transform: "count/Stateful"}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"state", inspect.Filter{State: "total"}, []int{0, 6}},
		{"transform and state", inspect.Filter{Transform: "count/Stateful", State: "orders"}, []int{1, 2}},
		{"timer family", inspect.Filter{State: "flush"}, []int{7}},
		{"GroupByKey", inspect.Filter{Transform: "count/GBK"}, []int{8, 9}},
		{"side input", inspect.Filter{State: "lookup"}, []int{11}},
		{"side input reader", inspect.Filter{Transform: "count/Join"}, []int{10, 11, 12}},
		{"source", inspect.Filter{Transform: "read/Source"}, []int{13}},
		{"no such transform", inspect.Filter{Transform: "nope"}, nil},
		{"state of another transform", inspect.Filter{Transform: "count/GBK", State: "total"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, i := range tc.want {
				want = append(want, golden[i])
			}
			if got := lines(t, r, tc.filter); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
