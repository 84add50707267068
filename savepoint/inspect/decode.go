package inspect

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

// Standard coder URNs the Decoder knows.
const (
	urnBytes         = "beam:coder:bytes:v1"
	urnString        = "beam:coder:string_utf8:v1"
	urnVarint        = "beam:coder:varint:v1"
	urnBool          = "beam:coder:bool:v1"
	urnDouble        = "beam:coder:double:v1"
	urnKV            = "beam:coder:kv:v1"
	urnIterable      = "beam:coder:iterable:v1"
	urnLengthPrefix  = "beam:coder:length_prefix:v1"
	urnNullable      = "beam:coder:nullable:v1"
	urnGlobalWindow  = "beam:coder:global_window:v1"
	urnInterval      = "beam:coder:interval_window:v1"
	urnWindowedValue = "beam:coder:windowed_value:v1"
	urnParamWindowed = "beam:coder:param_windowed_value:v1"
	urnTimer         = "beam:coder:timer:v1"
	urnRow           = "beam:coder:row:v1"
)

const (
	// maxDepth bounds the nesting of coders and schemas (a pipeline proto
	// can make them cyclic).
	maxDepth = 64
	// nodeBudgetBase and nodeBudgetPerByte bound the values one decode
	// makes, so that an iterable of empty elements with a huge count ends.
	nodeBudgetBase    = 1 << 10
	nodeBudgetPerByte = 8
)

// Decoder decodes values with the coders of a pipeline proto: Beam's
// standard coders and schema rows (how the Go SDK encodes structs). A
// value of any other coder is left encoded (Undecoded with the coder's
// URN), as is one whose bytes do not decode. It never panics on bad input
// and is safe for concurrent use once made.
//
// Values are decoded in the nested context (as the Fn API and the
// savepoint format store keys, windows and values) and must use all their
// bytes. Schema integers of every width are varints, as the Go SDK writes
// them.
type Decoder struct {
	coders  map[string]*pipepb.Coder
	schemas map[string]schemaOrErr // of the row coders, by coder ID
}

type schemaOrErr struct {
	schema *pipepb.Schema
	err    error
}

// NewDecoder returns a Decoder of the coders of a pipeline's components,
// by coder ID.
func NewDecoder(coders map[string]*pipepb.Coder) *Decoder {
	d := &Decoder{coders: coders, schemas: map[string]schemaOrErr{}}
	for id, c := range coders {
		if c.GetSpec().GetUrn() == urnRow {
			schema := &pipepb.Schema{}
			err := proto.Unmarshal(c.GetSpec().GetPayload(), schema)
			if err != nil {
				err = fmt.Errorf("coder %q: its schema: %w", id, err)
			}
			d.schemas[id] = schemaOrErr{schema, err}
		}
	}
	return d
}

// URN returns the URN of the coder with ID id, "" if there is none.
func (d *Decoder) URN(id string) string { return d.coders[id].GetSpec().GetUrn() }

// Decode decodes b, one value of the coder with ID id. It returns
// Undecoded for a coder it does not know or bytes that do not decode.
func (d *Decoder) Decode(id string, b []byte) any {
	s := d.newState(b)
	v, err := d.value(s, id, false, 0)
	if err == nil && len(s.b) > 0 {
		err = fmt.Errorf("%d bytes after the value", len(s.b))
	}
	return d.result(id, b, v, err)
}

// DecodeAll decodes b, values of the coder with ID id one after another
// (side input values, parked elements), into a []any; on an error it
// returns Undecoded of all of b.
func (d *Decoder) DecodeAll(id string, b []byte) any {
	s := d.newState(b)
	vs := []any{}
	var err error
	for len(s.b) > 0 && err == nil {
		before := len(s.b)
		var v any
		if v, err = d.value(s, id, false, 0); err == nil && len(s.b) == before {
			err = errors.New("a value of no bytes in a sequence")
		}
		vs = append(vs, v)
	}
	return d.result(id, b, vs, err)
}

func (d *Decoder) result(id string, b []byte, v any, err error) any {
	if err == nil {
		return v
	}
	var u *unknownCoder
	if errors.As(err, &u) && u.id == id && u.urn != "" {
		return Undecoded{Coder: u.urn, Bytes: b} // a coder only the SDK knows
	}
	urn := d.URN(id)
	if urn == "" {
		urn = "coder " + id
	}
	return Undecoded{Coder: urn, Bytes: b, Err: err.Error()}
}

// unknownCoder is the error of a coder the Decoder does not know, met
// where its bytes cannot be told from what follows.
type unknownCoder struct{ id, urn string }

func (e *unknownCoder) Error() string {
	if e.urn == "" {
		return fmt.Sprintf("coder %q is not in the pipeline", e.id)
	}
	return fmt.Sprintf("coder %q (%s) is known only to the SDK", e.id, e.urn)
}

// state is one decode: the bytes left and the values it may still make.
type state struct {
	b      []byte
	budget int
}

func (d *Decoder) newState(b []byte) *state {
	return &state{b: b, budget: nodeBudgetBase + nodeBudgetPerByte*len(b)}
}

var errTruncated = errors.New("truncated")

func (s *state) node() error {
	s.budget--
	if s.budget < 0 {
		return errors.New("too many values for the bytes")
	}
	return nil
}

func (s *state) take(n int) ([]byte, error) {
	if n < 0 || n > len(s.b) {
		return nil, errTruncated
	}
	v := s.b[:n:n]
	s.b = s.b[n:]
	return v, nil
}

func (s *state) byte1() (byte, error) {
	b, err := s.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (s *state) uvarint() (uint64, error) {
	v, n := binary.Uvarint(s.b)
	if n <= 0 {
		return 0, errors.New("malformed varint")
	}
	s.b = s.b[n:]
	return v, nil
}

// varint reads Beam's varint: an int64 as the uvarint of its two's
// complement.
func (s *state) varint() (int64, error) {
	v, err := s.uvarint()
	return int64(v), err
}

func (s *state) length() (int, error) {
	n, err := s.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(s.b)) {
		return 0, errTruncated
	}
	return int(n), nil
}

// bytes reads a nested byte string (uvarint length, bytes), or in the
// outer context all that is left.
func (s *state) bytes(outer bool) ([]byte, error) {
	if outer {
		return s.take(len(s.b))
	}
	n, err := s.length()
	if err != nil {
		return nil, err
	}
	return s.take(n)
}

func (s *state) string(outer bool) (string, error) {
	b, err := s.bytes(outer)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errors.New("invalid UTF-8 in a string")
	}
	return string(b), nil
}

func (s *state) bool() (bool, error) {
	c, err := s.byte1()
	if err != nil || c > 1 {
		return false, cmp.Or(err, fmt.Errorf("bool byte %d", c))
	}
	return c == 1, nil
}

func (s *state) uint64() (uint64, error) {
	b, err := s.take(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

func (s *state) double() (Double, error) {
	u, err := s.uint64()
	return Double(math.Float64frombits(u)), err
}

// eventTime reads a timestamp: 8 bytes big endian, millis - MinInt64.
func (s *state) eventTime() (Timestamp, error) {
	u, err := s.uint64()
	return Timestamp(int64(u) + math.MinInt64), err
}

func (s *state) int32() (int32, error) {
	b, err := s.take(4)
	if err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(b)), nil
}

// pane reads a PaneInfo (Beam's PaneInfoCoder).
func (s *state) pane() (Pane, error) {
	c, err := s.byte1()
	if err != nil {
		return Pane{}, err
	}
	p := Pane{First: c&1 != 0, Last: c&2 != 0, Timing: [4]string{"early", "on_time", "late", "unknown"}[c>>2&3]}
	switch c >> 4 {
	case 0:
	case 1:
		if p.Index, err = s.varint(); p.Timing == "early" {
			p.NonSpeculative = -1
		} else {
			p.NonSpeculative = p.Index
		}
	case 2:
		if p.Index, err = s.varint(); err == nil {
			p.NonSpeculative, err = s.varint()
		}
	default:
		err = fmt.Errorf("pane encoding %d", c>>4)
	}
	return p, err
}

// value decodes one value of coder id; outer is the outer context (the
// value runs to the end of s).
func (d *Decoder) value(s *state, id string, outer bool, depth int) (v any, err error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("coders nested deeper than %d", maxDepth)
	}
	if err := s.node(); err != nil {
		return nil, err
	}
	c := d.coders[id]
	if c == nil {
		return nil, &unknownCoder{id: id}
	}
	urn := c.GetSpec().GetUrn()
	comp := func(i int) (string, error) {
		if i >= len(c.GetComponentCoderIds()) {
			return "", fmt.Errorf("coder %q (%s) has no component %d", id, urn, i)
		}
		return c.GetComponentCoderIds()[i], nil
	}
	sub := func(i int, outer bool) (any, error) {
		cid, err := comp(i)
		if err != nil {
			return nil, err
		}
		return d.value(s, cid, outer, depth+1)
	}
	windows := func(i int) ([]any, error) {
		cid, err := comp(i)
		if err != nil {
			return nil, err
		}
		return d.windows(s, cid, depth)
	}
	switch urn {
	case urnBytes:
		return s.bytes(outer)
	case urnString:
		return s.string(outer)
	case urnVarint:
		return s.varint()
	case urnBool:
		return s.bool()
	case urnDouble:
		return s.double()
	case urnKV:
		k, err := sub(0, false)
		if err != nil {
			return nil, err
		}
		v, err := sub(1, outer)
		return KV{k, v}, err
	case urnIterable:
		cid, err := comp(0)
		if err != nil {
			return nil, err
		}
		return d.iterable(s, func() (any, error) { return d.value(s, cid, false, depth+1) })
	case urnLengthPrefix:
		n, err := s.length()
		if err != nil {
			return nil, err
		}
		b, _ := s.take(n)
		cid, err := comp(0)
		if err != nil {
			return nil, err
		}
		inner := &state{b: b, budget: s.budget}
		v, err := d.value(inner, cid, true, depth+1)
		s.budget = inner.budget
		var u *unknownCoder
		switch {
		case errors.As(err, &u) && u.id == cid && u.urn != "":
			return Undecoded{Coder: u.urn, Bytes: b}, nil
		case err == nil && len(inner.b) > 0:
			err = fmt.Errorf("%d bytes after a length-prefixed value", len(inner.b))
		}
		return v, err
	case urnNullable:
		present, err := s.bool()
		if err != nil || !present {
			return nil, err
		}
		return sub(0, outer)
	case urnGlobalWindow:
		return GlobalWindow{}, nil
	case urnInterval:
		return s.intervalWindow()
	case urnWindowedValue:
		var wv WindowedValue
		if wv.Timestamp, err = s.eventTime(); err != nil {
			return nil, err
		}
		if wv.Windows, err = windows(1); err != nil {
			return nil, err
		}
		if wv.Pane, err = s.pane(); err != nil {
			return nil, err
		}
		wv.Value, err = sub(0, outer)
		return wv, err
	case urnParamWindowed:
		// Only the value is encoded; timestamp, windows and pane are
		// the coder's parameters.
		return sub(0, outer)
	case urnTimer:
		var t Timer
		if t.Key, err = sub(0, false); err != nil {
			return nil, err
		}
		if t.Tag, err = s.string(false); err != nil {
			return nil, err
		}
		if t.Windows, err = windows(1); err != nil {
			return nil, err
		}
		if t.Clear, err = s.bool(); err != nil || t.Clear {
			return t, err
		}
		if t.Fire, err = s.eventTime(); err == nil {
			if t.Hold, err = s.eventTime(); err == nil {
				t.Pane, err = s.pane()
			}
		}
		return t, err
	case urnRow:
		se := d.schemas[id]
		if se.err != nil {
			return nil, se.err
		}
		return d.row(s, se.schema, depth+1)
	}
	// The caller leaves a value of an unknown coder encoded where it can
	// tell its bytes: all of them, or a length prefix's.
	return nil, &unknownCoder{id: id, urn: urn}
}

// windows reads a window list: an int32 count and the windows.
func (d *Decoder) windows(s *state, windowCoder string, depth int) ([]any, error) {
	n, err := s.int32()
	if err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, fmt.Errorf("window count %d", n)
	}
	ws := []any{}
	for range n {
		w, err := d.value(s, windowCoder, false, depth+1)
		if err != nil {
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

func (s *state) intervalWindow() (IntervalWindow, error) {
	end, err := s.eventTime()
	if err != nil {
		return IntervalWindow{}, err
	}
	dur, err := s.uvarint()
	if err != nil {
		return IntervalWindow{}, err
	}
	start := int64(end) - int64(dur)
	if int64(dur) < 0 || start > int64(end) {
		return IntervalWindow{}, fmt.Errorf("interval window ending at %d lasts %d ms", end, dur)
	}
	return IntervalWindow{Start: start, End: int64(end)}, nil
}

// iterable reads Beam's iterable encoding: an int32 count and the
// elements, or -1 and chunks (a uvarint count and its elements) until a
// count of 0.
func (d *Decoder) iterable(s *state, elem func() (any, error)) ([]any, error) {
	n, err := s.int32()
	if err != nil {
		return nil, err
	}
	vs := []any{}
	read := func(n uint64) error {
		for range n {
			v, err := elem()
			if err != nil {
				return err
			}
			vs = append(vs, v)
		}
		return nil
	}
	switch {
	case n >= 0:
		return vs, read(uint64(n))
	case n == -1:
		for {
			chunk, err := s.uvarint()
			if err != nil || chunk == 0 {
				return vs, err
			}
			if err := read(chunk); err != nil {
				return nil, err
			}
		}
	}
	return nil, fmt.Errorf("iterable count %d", n)
}

// row reads a schema row: a varint field count, a varint length and a
// bitmap of null fields, then each field that is not null. A row may have
// fewer fields than its schema (fields appended later): the rest are null.
func (d *Decoder) row(s *state, schema *pipepb.Schema, depth int) (Row, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("schemas nested deeper than %d", maxDepth)
	}
	fields := schema.GetFields()
	nf, err := s.varint()
	if err != nil {
		return nil, fmt.Errorf("row field count: %w", err)
	}
	if nf < 0 || nf > int64(len(fields)) {
		return nil, fmt.Errorf("row of %d fields, its schema has %d", nf, len(fields))
	}
	nl, err := s.varint()
	if err != nil || nl < 0 || nl > nf || nl > int64(len(s.b)) {
		return nil, cmp.Or(err, fmt.Errorf("row null bitmap of %d bytes for %d fields", nl, nf))
	}
	nulls, _ := s.take(int(nl))
	order := make([]int, len(fields)) // encoded position -> field
	for i := range order {
		order[i] = i
	}
	if schema.GetEncodingPositionsSet() {
		slices.SortStableFunc(order, func(a, b int) int {
			return cmp.Compare(fields[a].GetEncodingPosition(), fields[b].GetEncodingPosition())
		})
	}
	r := make(Row, len(fields))
	for i, f := range fields {
		r[i].Name = f.GetName()
	}
	for pos := range int(nf) {
		if pos/8 < len(nulls) && nulls[pos/8]>>(pos%8)&1 == 1 {
			continue
		}
		i := order[pos]
		if r[i].Value, err = d.field(s, fields[i].GetType(), depth); err != nil {
			return nil, fmt.Errorf("field %q: %w", fields[i].GetName(), err)
		}
	}
	return r, nil
}

// field reads a value of a schema field type (nullability at the top of a
// row is in its bitmap; see element for containers').
func (d *Decoder) field(s *state, t *pipepb.FieldType, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("schema types nested deeper than %d", maxDepth)
	}
	if err := s.node(); err != nil {
		return nil, err
	}
	switch ti := t.GetTypeInfo().(type) {
	case *pipepb.FieldType_AtomicType:
		switch ti.AtomicType {
		case pipepb.AtomicType_BYTE:
			c, err := s.byte1()
			return int64(c), err
		case pipepb.AtomicType_INT16, pipepb.AtomicType_INT32, pipepb.AtomicType_INT64:
			return s.varint()
		case pipepb.AtomicType_FLOAT:
			b, err := s.take(4)
			if err != nil {
				return nil, err
			}
			return Double(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
		case pipepb.AtomicType_DOUBLE:
			return s.double()
		case pipepb.AtomicType_STRING:
			return s.string(false)
		case pipepb.AtomicType_BOOLEAN:
			return s.bool()
		case pipepb.AtomicType_BYTES:
			return s.bytes(false)
		}
		return nil, fmt.Errorf("unknown atomic type %v", ti.AtomicType)
	case *pipepb.FieldType_ArrayType:
		et := ti.ArrayType.GetElementType()
		return d.iterable(s, func() (any, error) { return d.element(s, et, depth+1) })
	case *pipepb.FieldType_IterableType:
		et := ti.IterableType.GetElementType()
		return d.iterable(s, func() (any, error) { return d.element(s, et, depth+1) })
	case *pipepb.FieldType_MapType:
		n, err := s.int32()
		if err != nil {
			return nil, err
		}
		if n < 0 {
			return nil, fmt.Errorf("map size %d", n)
		}
		m := Map{}
		for range n {
			k, err := d.element(s, ti.MapType.GetKeyType(), depth+1)
			if err != nil {
				return nil, err
			}
			v, err := d.element(s, ti.MapType.GetValueType(), depth+1)
			if err != nil {
				return nil, err
			}
			m = append(m, KV{k, v})
		}
		return m, nil
	case *pipepb.FieldType_RowType:
		return d.row(s, ti.RowType.GetSchema(), depth+1)
	case *pipepb.FieldType_LogicalType:
		v, err := d.field(s, ti.LogicalType.GetRepresentation(), depth+1)
		if i, ok := v.(int64); ok && err == nil {
			switch ti.LogicalType.GetUrn() {
			case "uint", "uint8", "uint16", "uint32", "uint64": // Go's unsigned integers
				return uint64(i), nil
			}
		}
		return v, err
	}
	return nil, fmt.Errorf("unknown schema field type %T", t.GetTypeInfo())
}

// element reads an element of an array, iterable or map: a nullable one
// starts with a presence byte.
func (d *Decoder) element(s *state, t *pipepb.FieldType, depth int) (any, error) {
	if t.GetNullable() {
		present, err := s.bool()
		if err != nil || !present {
			return nil, err
		}
	}
	return d.field(s, t, depth)
}
