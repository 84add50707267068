package inspect

import (
	"bytes"
	"encoding/json"
	"math"
	"time"
)

// The decoded forms of values. Decode returns nil (null), bool, int64,
// uint64 (Go's unsigned logical types), Double, string, []byte (bytes,
// printed as base64), []any (iterables, arrays), KV, Row, Map,
// GlobalWindow, IntervalWindow, WindowedValue, Timer, and Undecoded where
// a coder is unknown or the bytes do not decode with it.

// Double is a decoded double or float; NaN and infinities print as the
// strings "NaN", "+Inf" and "-Inf" (JSON has no such numbers).
type Double float64

// MarshalJSON implements json.Marshaler.
func (d Double) MarshalJSON() ([]byte, error) {
	f := float64(d)
	switch {
	case math.IsNaN(f):
		return []byte(`"NaN"`), nil
	case math.IsInf(f, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(f)
}

// KV is a decoded beam:coder:kv:v1 value.
type KV struct {
	Key, Value any
}

// MarshalJSON implements json.Marshaler: {"key":..,"value":..}.
func (kv KV) MarshalJSON() ([]byte, error) {
	return object{{"key", kv.Key}, {"value", kv.Value}}.MarshalJSON()
}

// Row is a decoded schema row (beam:coder:row:v1, how the Go SDK encodes
// structs): its fields in schema order.
type Row []Field

// Field is one field of a Row; Value is nil for a null field.
type Field struct {
	Name  string
	Value any
}

// MarshalJSON implements json.Marshaler: an object of the fields, in order.
func (r Row) MarshalJSON() ([]byte, error) {
	o := make(object, len(r))
	for i, f := range r {
		o[i] = member{f.Name, f.Value}
	}
	return o.MarshalJSON()
}

// Map is a decoded schema map field: its entries in encoded order, printed
// as an array of {"key","value"} (keys need not be strings).
type Map []KV

// GlobalWindow is the global window; it prints as "global".
type GlobalWindow struct{}

// MarshalJSON implements json.Marshaler.
func (GlobalWindow) MarshalJSON() ([]byte, error) { return []byte(`"global"`), nil }

// IntervalWindow is a window [Start, End) in Beam milliseconds.
type IntervalWindow struct {
	Start, End int64
}

// MarshalJSON implements json.Marshaler: {"start":..,"end":..}.
func (w IntervalWindow) MarshalJSON() ([]byte, error) {
	return object{{"start", w.Start}, {"end", w.End}}.MarshalJSON()
}

// Timestamp is a Beam timestamp in milliseconds since the Unix epoch. It
// prints as {"millis":..,"time":"<RFC 3339>"}, without "time" where the
// year is outside 0000-9999 (Beam's minimum and maximum timestamps, and
// the end of the global window, are).
type Timestamp int64

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	o := object{{"millis", int64(t)}}
	if tm := time.UnixMilli(int64(t)).UTC(); tm.Year() >= 0 && tm.Year() <= 9999 {
		o = append(o, member{"time", tm.Format(time.RFC3339Nano)})
	}
	return o.MarshalJSON()
}

// Pane is the pane of a windowed value: Beam's PaneInfo.
type Pane struct {
	First, Last           bool
	Timing                string // early, on_time, late, unknown
	Index, NonSpeculative int64
}

// MarshalJSON implements json.Marshaler.
func (p Pane) MarshalJSON() ([]byte, error) {
	return object{{"first", p.First}, {"last", p.Last}, {"timing", p.Timing}, {"index", p.Index}, {"non_speculative_index", p.NonSpeculative}}.MarshalJSON()
}

// WindowedValue is a decoded beam:coder:windowed_value:v1 value.
type WindowedValue struct {
	Timestamp Timestamp
	Windows   []any
	Pane      Pane
	Value     any
}

// MarshalJSON implements json.Marshaler.
func (v WindowedValue) MarshalJSON() ([]byte, error) {
	return object{{"timestamp", v.Timestamp}, {"windows", v.Windows}, {"pane", v.Pane}, {"value", v.Value}}.MarshalJSON()
}

// Timer is a decoded beam:coder:timer:v1 value; Fire, Hold and Pane are
// zero for a cleared timer.
type Timer struct {
	Key     any
	Tag     string
	Windows []any
	Clear   bool
	Fire    Timestamp
	Hold    Timestamp
	Pane    Pane
}

// MarshalJSON implements json.Marshaler.
func (t Timer) MarshalJSON() ([]byte, error) {
	o := object{{"key", t.Key}, {"tag", t.Tag}, {"windows", t.Windows}, {"clear", t.Clear}}
	if !t.Clear {
		o = append(o, member{"fire", t.Fire}, member{"hold", t.Hold}, member{"pane", t.Pane})
	}
	return o.MarshalJSON()
}

// Undecoded is a value left encoded: its coder is one only the SDK knows,
// or (Err set) the bytes do not decode with the coder the metadata names.
// It prints as {"base64":..,"coder":"<URN>"[,"error":..]}.
type Undecoded struct {
	Coder string // the coder's URN ("" for opaque bytes with no coder)
	Bytes []byte
	Err   string
}

// MarshalJSON implements json.Marshaler.
func (u Undecoded) MarshalJSON() ([]byte, error) {
	o := object{{"base64", u.Bytes}}
	if u.Coder != "" {
		o = append(o, member{"coder", u.Coder})
	}
	if u.Err != "" {
		o = append(o, member{"error", u.Err})
	}
	return o.MarshalJSON()
}

// object is a JSON object whose members print in order.
type object []member

type member struct {
	k string
	v any
}

// MarshalJSON implements json.Marshaler.
func (o object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.k)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
