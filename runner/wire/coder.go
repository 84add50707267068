package wire

import (
	"errors"
	"fmt"
	"math"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// Coder is a walkable coder tree: a URN and its component coders, in the
// order of the proto's component_coder_ids.
//
// A length_prefix Coder has one component describing what is inside the
// prefix; that component need not be walkable (it may be a row or custom
// coder with no components of its own), because Skip never looks inside a
// length prefix.
type Coder struct {
	URN        string
	Components []*Coder
}

// String renders the tree, e.g. "kv(string_utf8, length_prefix(row))".
func (c *Coder) String() string {
	if c == nil {
		return "<nil>"
	}
	s := shortURN(c.URN)
	if len(c.Components) == 0 {
		return s
	}
	s += "("
	for i, sub := range c.Components {
		if i > 0 {
			s += ", "
		}
		s += sub.String()
	}
	return s + ")"
}

// Build parses coder id of coders into a walkable tree. It returns an error
// naming the coder ID and URN of the first part that cannot be walked (it
// should have been length-prefixed, see LengthPrefixUnknown), is missing, or
// has the wrong number of components.
func Build(coders map[string]*pipepb.Coder, id string) (*Coder, error) {
	b := builder{coders: coders, done: map[string]*Coder{}, busy: map[string]bool{}}
	c, err := b.build(id)
	if err != nil {
		return nil, fmt.Errorf("wire: build coder %q: %w", id, err)
	}
	return c, nil
}

type builder struct {
	coders map[string]*pipepb.Coder
	done   map[string]*Coder
	busy   map[string]bool // on the current path, to reject cycles
}

func (b *builder) build(id string) (*Coder, error) {
	if c, ok := b.done[id]; ok {
		return c, nil
	}
	pc, ok := b.coders[id]
	if !ok || pc == nil {
		return nil, fmt.Errorf("coder %q not found", id)
	}
	if b.busy[id] {
		return nil, fmt.Errorf("coder %q refers to itself", id)
	}
	b.busy[id] = true
	defer delete(b.busy, id)

	urn := pc.GetSpec().GetUrn()
	comps := pc.GetComponentCoderIds()
	c := &Coder{URN: urn}
	switch {
	case leafURN(urn):
		// Components, if any, do not affect the encoding.
	case urn == URNLengthPrefix:
		if len(comps) != 1 {
			return nil, fmt.Errorf("coder %q (%s) has %d components, want 1", id, urn, len(comps))
		}
		inner, err := b.build(comps[0])
		if err != nil {
			// Opaque inside the prefix: keep only its URN.
			ic := b.coders[comps[0]]
			if ic == nil {
				return nil, fmt.Errorf("coder %q (%s): %w", id, urn, err)
			}
			inner = &Coder{URN: ic.GetSpec().GetUrn()}
		}
		c.Components = []*Coder{inner}
	case structuralArity(urn) >= 0:
		if want := structuralArity(urn); len(comps) != want {
			return nil, fmt.Errorf("coder %q (%s) has %d components, want %d", id, urn, len(comps), want)
		}
		for i, cid := range comps {
			sub, err := b.build(cid)
			if err != nil {
				return nil, fmt.Errorf("coder %q (%s) component %d: %w", id, urn, i, err)
			}
			c.Components = append(c.Components, sub)
		}
	default:
		return nil, fmt.Errorf("coder %q (%s): %w; length-prefix it", id, urn, ErrNotWalkable)
	}
	b.done[id] = c
	return c, nil
}

// Skip returns the number of bytes of the one element encoded at the front of
// b in the nested context. It returns an error, and never panics, on
// truncated or corrupt input and on coders it cannot walk.
func (c *Coder) Skip(b []byte) (int, error) {
	n, err := c.skip(b, 0)
	if err != nil {
		return 0, fmt.Errorf("wire: skip %s: %w", c, err)
	}
	return n, nil
}

// SplitKV splits one encoded KV value b (c must be a kv coder) into its key
// and value bytes. b must hold exactly the one KV.
func (c *Coder) SplitKV(b []byte) (key, value []byte, err error) {
	if c == nil || c.URN != URNKV || len(c.Components) != 2 {
		return nil, nil, fmt.Errorf("wire: split kv: coder %s is not a kv coder", c)
	}
	k, err := c.Components[0].skip(b, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("wire: split kv: key %s: %w", c.Components[0], err)
	}
	v, err := c.Components[1].skip(b, k)
	if err != nil {
		return nil, nil, fmt.Errorf("wire: split kv: value %s: %w", c.Components[1], err)
	}
	if v != len(b) {
		return nil, nil, fmt.Errorf("wire: split kv %s: %d bytes after the value: %w", c, len(b)-v, ErrCorrupt)
	}
	return b[:k:k], b[k:v:v], nil
}

// component returns c.Components[i], or an error if the tree is malformed
// (possible only for hand-built Coders).
func (c *Coder) component(i int) (*Coder, error) {
	if i >= len(c.Components) || c.Components[i] == nil {
		return nil, fmt.Errorf("%s coder lacks component %d", shortURN(c.URN), i)
	}
	return c.Components[i], nil
}

// skip returns the offset just past the element of c at b[p:].
func (c *Coder) skip(b []byte, p int) (int, error) {
	if c == nil {
		return 0, errors.New("nil coder")
	}
	switch c.URN {
	case URNBytes, URNStringUTF8, URNLengthPrefix:
		_, end, err := readLen(b, p, shortURN(c.URN))
		return end, err
	case URNVarint:
		_, n, err := ReadVarint(b[p:])
		return p + n, err
	case URNBool:
		return p + 1, need(b, p, 1, "bool")
	case URNDouble:
		return p + 8, need(b, p, 8, "double")
	case URNGlobalWindow:
		return p, nil
	case URNIntervalWindow:
		return skipIntervalWindow(b, p)
	case URNKV:
		return c.skipComponents(b, p, 0, 1)
	case URNParamWindowedValue:
		return c.skipComponents(b, p, 0)
	case URNIterable:
		elem, err := c.component(0)
		if err != nil {
			return 0, err
		}
		return skipIterable(elem, b, p)
	case URNNullable:
		if err := need(b, p, 1, "nullable flag"); err != nil {
			return 0, err
		}
		switch b[p] {
		case 0:
			return p + 1, nil
		case 1:
			return c.skipComponents(b, p+1, 0)
		}
		return 0, fmt.Errorf("nullable flag %d: %w", b[p], ErrCorrupt)
	case URNWindowedValue:
		win, err := c.component(1)
		if err != nil {
			return 0, err
		}
		p, err = skipHeader(win, b, p, nil)
		if err != nil {
			return 0, err
		}
		return c.skipComponents(b, p, 0)
	case URNTimer:
		return c.skipTimer(b, p)
	}
	return 0, fmt.Errorf("%s: %w", c.URN, ErrNotWalkable)
}

func (c *Coder) skipComponents(b []byte, p int, idx ...int) (int, error) {
	for _, i := range idx {
		sub, err := c.component(i)
		if err != nil {
			return 0, err
		}
		if p, err = sub.skip(b, p); err != nil {
			return 0, err
		}
	}
	return p, nil
}

// skipTimer steps over a timer: key, dynamic tag, windows, clear flag and,
// unless cleared, fire and hold timestamps and a pane.
func (c *Coder) skipTimer(b []byte, p int) (int, error) {
	p, err := c.skipComponents(b, p, 0)
	if err != nil {
		return 0, fmt.Errorf("timer key: %w", err)
	}
	if _, p, err = readLen(b, p, "timer tag"); err != nil {
		return 0, err
	}
	win, err := c.component(1)
	if err != nil {
		return 0, err
	}
	n, err := readInt32(b, p, "timer window count")
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, fmt.Errorf("timer window count %d: %w", n, ErrCorrupt)
	}
	if p, err = skipN(win, b, p+4, int64(n)); err != nil {
		return 0, fmt.Errorf("timer windows: %w", err)
	}
	if err := need(b, p, 1, "timer clear flag"); err != nil {
		return 0, err
	}
	switch b[p] {
	case 1:
		return p + 1, nil
	case 0:
		p++
	default:
		return 0, fmt.Errorf("timer clear flag %d: %w", b[p], ErrCorrupt)
	}
	if err := need(b, p, 16, "timer fire and hold timestamps"); err != nil {
		return 0, err
	}
	return skipPane(b, p+16)
}

// skipIterable steps over an iterable of elem: an int32 count >= 0 and that
// many elements, or -1 and blocks of (varint count, elements) ending with a
// count of 0.
func skipIterable(elem *Coder, b []byte, p int) (int, error) {
	return skipCounted(b, p, "iterable", true, func(p int, n int64) (int, error) { return skipN(elem, b, p, n) })
}

// skipCounted steps over a container with an int32 count (what names it):
// n >= 0 and n elements, or, if blocks, -1 and blocks of (varint count,
// elements) ending with a count of 0. elems steps over n elements from p.
func skipCounted(b []byte, p int, what string, blocks bool, elems func(p int, n int64) (int, error)) (int, error) {
	n, err := readInt32(b, p, what+" count")
	if err != nil {
		return 0, err
	}
	p += 4
	if n >= 0 {
		return elems(p, int64(n))
	}
	if n != -1 || !blocks {
		return 0, fmt.Errorf("%s count %d: %w", what, n, ErrCorrupt)
	}
	for {
		m, k, err := ReadVarint(b[p:])
		if err != nil {
			return 0, fmt.Errorf("iterable block count: %w", err)
		}
		p += k
		if m == 0 {
			return p, nil
		}
		if m > math.MaxInt64 {
			return 0, fmt.Errorf("iterable block count %d: %w", int64(m), ErrCorrupt)
		}
		if p, err = elems(p, int64(m)); err != nil {
			return 0, err
		}
	}
}

// skipN steps over n elements of c. Fixed-size elements are skipped at once;
// any other element takes at least one byte, so the loop is bounded by len(b).
func skipN(c *Coder, b []byte, p int, n int64) (int, error) {
	if size := fixedSize(c); size >= 0 {
		if size == 0 || n == 0 {
			return p, nil
		}
		if n > int64(len(b)-p)/int64(size) {
			return 0, fmt.Errorf("%d elements of %d bytes with %d left: %w", n, size, len(b)-p, ErrTruncated)
		}
		return p + int(n)*size, nil
	}
	for i := int64(0); i < n; i++ {
		q, err := c.skip(b, p)
		if err != nil {
			return 0, fmt.Errorf("element %d of %d: %w", i, n, err)
		}
		if q == p { // cannot happen for a variable-size coder; guard anyway
			return 0, fmt.Errorf("element %d of %s took no bytes: %w", i, c, ErrCorrupt)
		}
		p = q
	}
	return p, nil
}

// fixedSize returns the encoded size of every element of c, or -1 if it
// varies.
func fixedSize(c *Coder) int {
	if c == nil {
		return -1
	}
	switch c.URN {
	case URNBool:
		return 1
	case URNDouble:
		return 8
	case URNGlobalWindow:
		return 0
	case URNParamWindowedValue:
		if len(c.Components) >= 1 {
			return fixedSize(c.Components[0])
		}
	case URNKV:
		if len(c.Components) == 2 {
			k, v := fixedSize(c.Components[0]), fixedSize(c.Components[1])
			if k >= 0 && v >= 0 {
				return k + v
			}
		}
	}
	return -1
}

// shortURN turns "beam:coder:kv:v1" into "kv" for messages and IDs.
func shortURN(urn string) string {
	s := urn
	for _, prefix := range []string{"beam:coder:", "beam:go:coder:"} {
		if len(s) > len(prefix) && s[:len(prefix)] == prefix {
			s = s[len(prefix):]
			break
		}
	}
	if i := len(s) - 3; i > 0 && s[i:] == ":v1" {
		s = s[:i]
	}
	if s == "" {
		return "<no urn>"
	}
	return s
}
