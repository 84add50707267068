package wire

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// Schema rows (beam:coder:row:v1) at the byte level, as the Go SDK writes
// them: a varint field count, a varint length and a bitmap of null fields
// (bit i of byte i/8; trailing zero bytes left out), then each field that
// is not null, in encoding order (schema order unless the schema sets
// encoding positions). Field values: BYTE one byte; INT16, INT32, INT64
// and Go's integer logical types varints (the Go SDK writes every integer
// width as a varint); FLOAT and DOUBLE 4 and 8 bytes big endian; STRING
// and BYTES a varint length and the bytes; BOOLEAN one byte; ARRAY and
// ITERABLE an int32 count (or -1 and varint-counted blocks ending with 0)
// and the elements; MAP an int32 count and the keys and values; ROW a
// nested row; other logical types their representation. A nullable
// element of an array, iterable or map starts with a presence byte.
//
// RowMigration re-encodes rows of one schema as rows of another by field
// name: what restoring a Go struct's state needs after the struct gained
// or lost fields, since the Go decoder refuses a row whose field count
// differs from its struct's.

// maxRowDepth bounds the nesting of schema types walked.
const maxRowDepth = 64

// goIntLogical are the Go SDK's logical types for Go integers: varints.
var goIntLogical = map[string]bool{"int": true, "int8": true, "uint16": true, "uint32": true, "uint64": true, "uint": true}

// rowOrder maps encoded position to field index.
func rowOrder(s *pipepb.Schema) []int {
	fields := s.GetFields()
	order := make([]int, len(fields))
	for i := range order {
		order[i] = i
	}
	if s.GetEncodingPositionsSet() {
		slices.SortStableFunc(order, func(a, b int) int {
			return cmp.Compare(fields[a].GetEncodingPosition(), fields[b].GetEncodingPosition())
		})
	}
	return order
}

// SplitRow reads the row of schema s at the front of b. It returns each
// field's encoded value by field index (nil for a null field, and for
// fields past the row's own field count) and the row's length.
func SplitRow(s *pipepb.Schema, b []byte) (fields [][]byte, n int, err error) {
	return splitRow(s, b, 0, 0)
}

func splitRow(s *pipepb.Schema, b []byte, p, depth int) ([][]byte, int, error) {
	if depth > maxRowDepth {
		return nil, 0, fmt.Errorf("row schemas nested deeper than %d: %w", maxRowDepth, ErrCorrupt)
	}
	fs := s.GetFields()
	nf, k, err := ReadVarint(b[p:])
	if err != nil {
		return nil, 0, fmt.Errorf("row field count: %w", err)
	}
	p += k
	if nf > uint64(len(fs)) {
		return nil, 0, fmt.Errorf("row of %d fields, its schema has %d: %w", nf, len(fs), ErrCorrupt)
	}
	start, end, err := readLen(b, p, "row null bitmap")
	if err != nil {
		return nil, 0, err
	}
	if uint64(end-start) > (nf+7)/8 {
		return nil, 0, fmt.Errorf("row null bitmap of %d bytes for %d fields: %w", end-start, nf, ErrCorrupt)
	}
	nulls := b[start:end]
	p = end
	out := make([][]byte, len(fs))
	order := rowOrder(s)
	for pos := range int(nf) {
		if pos/8 < len(nulls) && nulls[pos/8]>>(pos%8)&1 == 1 {
			continue
		}
		i := order[pos]
		q, err := skipField(fs[i].GetType(), b, p, depth+1)
		if err != nil {
			return nil, 0, fmt.Errorf("field %q: %w", fs[i].GetName(), err)
		}
		out[i] = b[p:q:q]
		if out[i] == nil {
			out[i] = []byte{}
		}
		p = q
	}
	return out, p, nil
}

// skipField steps over a value of field type t at b[p:] (nullability at
// the top of a row is in its bitmap; see skipElement for containers').
func skipField(t *pipepb.FieldType, b []byte, p, depth int) (int, error) {
	if depth > maxRowDepth {
		return 0, fmt.Errorf("schema types nested deeper than %d: %w", maxRowDepth, ErrCorrupt)
	}
	switch ti := t.GetTypeInfo().(type) {
	case *pipepb.FieldType_AtomicType:
		switch ti.AtomicType {
		case pipepb.AtomicType_BYTE, pipepb.AtomicType_BOOLEAN:
			return p + 1, need(b, p, 1, ti.AtomicType.String())
		case pipepb.AtomicType_INT16, pipepb.AtomicType_INT32, pipepb.AtomicType_INT64:
			_, k, err := ReadVarint(b[p:])
			return p + k, err
		case pipepb.AtomicType_FLOAT:
			return p + 4, need(b, p, 4, "FLOAT")
		case pipepb.AtomicType_DOUBLE:
			return p + 8, need(b, p, 8, "DOUBLE")
		case pipepb.AtomicType_STRING, pipepb.AtomicType_BYTES:
			_, end, err := readLen(b, p, ti.AtomicType.String())
			return end, err
		}
		return 0, fmt.Errorf("unknown atomic type %v: %w", ti.AtomicType, ErrCorrupt)
	case *pipepb.FieldType_ArrayType:
		return skipElements(ti.ArrayType.GetElementType(), nil, b, p, depth)
	case *pipepb.FieldType_IterableType:
		return skipElements(ti.IterableType.GetElementType(), nil, b, p, depth)
	case *pipepb.FieldType_MapType:
		return skipElements(ti.MapType.GetKeyType(), ti.MapType.GetValueType(), b, p, depth)
	case *pipepb.FieldType_RowType:
		_, q, err := splitRow(ti.RowType.GetSchema(), b, p, depth+1)
		return q, err
	case *pipepb.FieldType_LogicalType:
		if goIntLogical[ti.LogicalType.GetUrn()] {
			_, k, err := ReadVarint(b[p:])
			return p + k, err
		}
		return skipField(ti.LogicalType.GetRepresentation(), b, p, depth+1)
	}
	return 0, fmt.Errorf("unknown schema field type %T: %w", t.GetTypeInfo(), ErrCorrupt)
}

// skipElements steps over an array or iterable of elem (value nil), or a
// map of elem to value: an int32 count, or for arrays and iterables -1
// and varint-counted blocks ending with a count of 0.
func skipElements(elem, value *pipepb.FieldType, b []byte, p, depth int) (int, error) {
	// Each element takes a byte at least: n elements past the end fail
	// at the first one missing.
	return skipCounted(b, p, "schema container", value == nil, func(p int, n int64) (int, error) {
		for range n {
			q, err := skipElement(elem, b, p, depth+1)
			if err == nil && value != nil {
				q, err = skipElement(value, b, q, depth+1)
			}
			if err == nil && q == p {
				err = fmt.Errorf("an element of no bytes: %w", ErrCorrupt)
			}
			if err != nil {
				return 0, err
			}
			p = q
		}
		return p, nil
	})
}

// skipElement steps over a container element: a nullable one starts with
// a presence byte.
func skipElement(t *pipepb.FieldType, b []byte, p, depth int) (int, error) {
	if t.GetNullable() {
		if err := need(b, p, 1, "presence byte"); err != nil {
			return 0, err
		}
		switch b[p] {
		case 0:
			return p + 1, nil
		case 1:
			p++
		default:
			return 0, fmt.Errorf("presence byte %d: %w", b[p], ErrCorrupt)
		}
	}
	return skipField(t, b, p, depth)
}

// appendRow appends a row of schema s whose fields (by field index) are
// the encoded values in fields, nil for null.
func appendRow(dst []byte, s *pipepb.Schema, fields [][]byte) []byte {
	order := rowOrder(s)
	dst = AppendVarint(dst, uint64(len(order)))
	nulls := make([]byte, (len(order)+7)/8)
	last := -1
	for pos, i := range order {
		if fields[i] == nil {
			nulls[pos/8] |= 1 << (pos % 8)
			last = pos / 8
		}
	}
	dst = AppendVarint(dst, uint64(last+1))
	dst = append(dst, nulls[:last+1]...)
	for _, i := range order {
		dst = append(dst, fields[i]...)
	}
	return dst
}

// SchemaString describes a schema as a Go-like struct of its fields'
// names and types, e.g. "{Count int64, Tags []string, Next *{...}}"
// (nullable types start with '*'). Equal strings are equal schemas but for
// IDs, options and encoding positions.
func SchemaString(s *pipepb.Schema) string {
	var sb strings.Builder
	writeSchema(&sb, s, 0)
	return sb.String()
}

func writeSchema(sb *strings.Builder, s *pipepb.Schema, depth int) {
	if depth > maxRowDepth {
		sb.WriteString("{...}")
		return
	}
	sb.WriteByte('{')
	for i, f := range s.GetFields() {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(f.GetName())
		sb.WriteByte(' ')
		writeFieldType(sb, f.GetType(), depth+1)
	}
	sb.WriteByte('}')
}

func writeFieldType(sb *strings.Builder, t *pipepb.FieldType, depth int) {
	if depth > maxRowDepth {
		sb.WriteString("...")
		return
	}
	if t.GetNullable() {
		sb.WriteByte('*')
	}
	switch ti := t.GetTypeInfo().(type) {
	case *pipepb.FieldType_AtomicType:
		sb.WriteString(strings.ToLower(ti.AtomicType.String()))
	case *pipepb.FieldType_ArrayType:
		sb.WriteString("[]")
		writeFieldType(sb, ti.ArrayType.GetElementType(), depth+1)
	case *pipepb.FieldType_IterableType:
		sb.WriteString("iter[]")
		writeFieldType(sb, ti.IterableType.GetElementType(), depth+1)
	case *pipepb.FieldType_MapType:
		sb.WriteString("map[")
		writeFieldType(sb, ti.MapType.GetKeyType(), depth+1)
		sb.WriteByte(']')
		writeFieldType(sb, ti.MapType.GetValueType(), depth+1)
	case *pipepb.FieldType_RowType:
		writeSchema(sb, ti.RowType.GetSchema(), depth+1)
	case *pipepb.FieldType_LogicalType:
		fmt.Fprintf(sb, "logical(%s)", ti.LogicalType.GetUrn())
		writeFieldType(sb, ti.LogicalType.GetRepresentation(), depth+1)
	default:
		sb.WriteString("?")
	}
}

// RowMigration re-encodes rows of schema from as rows of schema to, field
// by field name: a field of both keeps its value (migrated in turn if it
// is a row whose schema changed the same way), a field only in to gets
// its Go zero value (null if nullable, and for slices and maps, as the Go
// SDK writes nil ones), a field only in from is dropped.
type RowMigration struct {
	from, to *pipepb.Schema
	src      []int           // by to's field: from's field index, -1 if new
	sub      []*RowMigration // by to's field: migration of a nested row, or nil
	zero     [][]byte        // by to's field: the value of a new field (nil: null)
	// Added and Removed name the fields to has and from has not, and the
	// reverse (nested ones as "Outer.Inner").
	Added, Removed []string
}

// NewRowMigration plans the migration of rows of schema from into rows of
// schema to. It refuses a field of both whose type changed (other than a
// row's fields), and a new field with no zero value the Go SDK would
// decode (a non-nullable logical type other than Go's integers).
func NewRowMigration(from, to *pipepb.Schema) (*RowMigration, error) {
	return newRowMigration(from, to, "", 0)
}

func newRowMigration(from, to *pipepb.Schema, prefix string, depth int) (*RowMigration, error) {
	if depth > maxRowDepth {
		return nil, fmt.Errorf("row schemas nested deeper than %d", maxRowDepth)
	}
	m := &RowMigration{from: from, to: to}
	old := map[string]int{}
	for i, f := range from.GetFields() {
		old[f.GetName()] = i
	}
	kept := map[string]bool{}
	for _, f := range to.GetFields() {
		name := prefix + f.GetName()
		i, ok := old[f.GetName()]
		if !ok {
			z, err := zeroValue(f.GetType(), 0)
			if err != nil {
				return nil, fmt.Errorf("new field %s: %w", name, err)
			}
			m.src, m.sub, m.zero = append(m.src, -1), append(m.sub, nil), append(m.zero, z)
			m.Added = append(m.Added, name)
			continue
		}
		kept[f.GetName()] = true
		ft, oft := f.GetType(), from.GetFields()[i].GetType()
		var sub *RowMigration
		if fieldTypeString(ft) != fieldTypeString(oft) {
			nr, or := ft.GetRowType().GetSchema(), oft.GetRowType().GetSchema()
			if nr == nil || or == nil || ft.GetNullable() != oft.GetNullable() {
				return nil, fmt.Errorf("field %s changed type from %s to %s: only fields added or removed are migrated", name, fieldTypeString(oft), fieldTypeString(ft))
			}
			var err error
			if sub, err = newRowMigration(or, nr, name+".", depth+1); err != nil {
				return nil, err
			}
			m.Added, m.Removed = append(m.Added, sub.Added...), append(m.Removed, sub.Removed...)
		}
		m.src, m.sub, m.zero = append(m.src, i), append(m.sub, sub), append(m.zero, nil)
	}
	for _, f := range from.GetFields() {
		if !kept[f.GetName()] {
			m.Removed = append(m.Removed, prefix+f.GetName())
		}
	}
	return m, nil
}

func fieldTypeString(t *pipepb.FieldType) string {
	var sb strings.Builder
	writeFieldType(&sb, t, 0)
	return sb.String()
}

// zeroValue is the encoding of the zero value of a new field of type t as
// the Go SDK writes it: nil (null) for a nullable one and for nil byte
// slices, slices and maps.
func zeroValue(t *pipepb.FieldType, depth int) ([]byte, error) {
	if t.GetNullable() {
		return nil, nil
	}
	if depth > maxRowDepth {
		return nil, fmt.Errorf("schema types nested deeper than %d", maxRowDepth)
	}
	switch ti := t.GetTypeInfo().(type) {
	case *pipepb.FieldType_AtomicType:
		switch ti.AtomicType {
		case pipepb.AtomicType_FLOAT:
			return make([]byte, 4), nil
		case pipepb.AtomicType_DOUBLE:
			return make([]byte, 8), nil
		case pipepb.AtomicType_BYTE, pipepb.AtomicType_BOOLEAN, pipepb.AtomicType_INT16, pipepb.AtomicType_INT32,
			pipepb.AtomicType_INT64, pipepb.AtomicType_STRING:
			return []byte{0}, nil // one byte, a zero varint, or an empty string
		case pipepb.AtomicType_BYTES:
			return nil, nil // a nil []byte: the Go SDK writes it as null
		}
	case *pipepb.FieldType_ArrayType, *pipepb.FieldType_IterableType, *pipepb.FieldType_MapType:
		return nil, nil // a nil slice or map: the Go SDK writes it as null
	case *pipepb.FieldType_RowType:
		s := ti.RowType.GetSchema()
		fields := make([][]byte, len(s.GetFields()))
		for i, f := range s.GetFields() {
			z, err := zeroValue(f.GetType(), depth+1)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.GetName(), err)
			}
			fields[i] = z
		}
		return appendRow(nil, s, fields), nil
	case *pipepb.FieldType_LogicalType:
		if goIntLogical[ti.LogicalType.GetUrn()] {
			return []byte{0}, nil
		}
		return nil, fmt.Errorf("logical type %q has no zero value weir knows: make the field a pointer (nullable), which starts nil", ti.LogicalType.GetUrn())
	}
	return nil, fmt.Errorf("type %s has no zero value weir knows", fieldTypeString(t))
}

// Migrate re-encodes b, one or more rows of the from schema one after
// another (what one state append wrote), as rows of the to schema.
func (m *RowMigration) Migrate(b []byte) ([]byte, error) {
	var out []byte
	for p := 0; p < len(b); {
		var (
			n   int
			err error
		)
		if out, n, err = m.migrateRow(out, b[p:], 0); err != nil {
			return nil, fmt.Errorf("row at byte %d: %w", p, err)
		}
		p += n
	}
	return out, nil
}

// migrateRow appends the migration of the row at the front of b and
// returns the row's length in b.
func (m *RowMigration) migrateRow(dst, b []byte, depth int) ([]byte, int, error) {
	old, n, err := splitRow(m.from, b, 0, depth)
	if err != nil {
		return nil, 0, err
	}
	fields := make([][]byte, len(m.src))
	for i, src := range m.src {
		switch {
		case src < 0:
			fields[i] = m.zero[i]
		case m.sub[i] != nil && old[src] != nil:
			v, _, err := m.sub[i].migrateRow(nil, old[src], depth+1)
			if err != nil {
				return nil, 0, fmt.Errorf("field %q: %w", m.to.GetFields()[i].GetName(), err)
			}
			fields[i] = v
		default:
			fields[i] = old[src]
		}
		if fields[i] == nil && !m.to.GetFields()[i].GetType().GetNullable() {
			// A null in a row of fewer fields than its schema, for a
			// field that is not nullable: its zero value.
			z, err := zeroValue(m.to.GetFields()[i].GetType(), depth)
			if err != nil {
				return nil, 0, fmt.Errorf("field %q is null: %w", m.to.GetFields()[i].GetName(), err)
			}
			fields[i] = z
		}
	}
	return appendRow(dst, m.to, fields), n, nil
}
