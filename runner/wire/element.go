package wire

import (
	"encoding/binary"
	"fmt"
)

// Element is one windowed value, as slices of the input buffer.
type Element struct {
	Raw       []byte   // the whole encoded windowed value
	Timestamp int64    // event time in milliseconds (Beam instant)
	Windows   [][]byte // each encoded window
	Pane      []byte   // the encoded pane info
	Value     []byte   // the encoded value
}

// WVCoder walks windowed values of a beam:coder:windowed_value:v1 coder.
type WVCoder struct {
	Elem, Window *Coder
}

// NewWV makes a WVCoder from a windowed_value Coder returned by Build.
func NewWV(c *Coder) (WVCoder, error) {
	if c == nil || c.URN != URNWindowedValue || len(c.Components) != 2 ||
		c.Components[0] == nil || c.Components[1] == nil {
		return WVCoder{}, fmt.Errorf("wire: coder %s is not a windowed_value coder with two components", c)
	}
	return WVCoder{Elem: c.Components[0], Window: c.Components[1]}, nil
}

// Next reads the windowed value at the front of b and returns it with the
// bytes after it. The Element's slices alias b.
func (w WVCoder) Next(b []byte) (e Element, rest []byte, err error) {
	if w.Elem == nil || w.Window == nil {
		return Element{}, nil, fmt.Errorf("wire: next windowed value: WVCoder lacks element or window coder")
	}
	p, err := skipHeader(w.Window, b, 0, &e)
	if err != nil {
		return Element{}, nil, fmt.Errorf("wire: windowed value header: %w", err)
	}
	end, err := w.Elem.skip(b, p)
	if err != nil {
		return Element{}, nil, fmt.Errorf("wire: windowed value of %s: %w", w.Elem, err)
	}
	e.Value = b[p:end:end]
	e.Raw = b[:end:end]
	return e, b[end:], nil
}

// ForEach calls fn for every element in b, a concatenation of windowed
// values, stopping at the first error (fn's error is returned as is).
func (w WVCoder) ForEach(b []byte, fn func(e Element) error) error {
	for i := 0; len(b) > 0; i++ {
		e, rest, err := w.Next(b)
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		if err := fn(e); err != nil {
			return err
		}
		b = rest
	}
	return nil
}

// Cut splits b, a concatenation of windowed values, after the whole
// elements that fit in limit bytes: head holds at least one element (more
// than limit bytes if the first alone is bigger), rest the elements after
// it. A b no bigger than limit is all head.
func (w WVCoder) Cut(b []byte, limit int) (head, rest []byte, err error) {
	if len(b) <= limit {
		return b, nil, nil
	}
	end := 0
	for end < len(b) {
		_, next, err := w.Next(b[end:])
		if err != nil {
			return nil, nil, err
		}
		n := len(b) - end - len(next)
		if end > 0 && end+n > limit {
			break
		}
		end += n
	}
	return b[:end:end], b[end:], nil
}

// skipHeader steps over a windowed-value header (timestamp, windows, pane)
// at b[p:]. If e is not nil it records the parts in e.
func skipHeader(win *Coder, b []byte, p int, e *Element) (int, error) {
	if err := need(b, p, 8, "timestamp"); err != nil {
		return 0, err
	}
	ts := int64(binary.BigEndian.Uint64(b[p:]) ^ (1 << 63))
	p += 8
	n, err := readInt32(b, p, "window count")
	if err != nil {
		return 0, err
	}
	p += 4
	if n < 0 {
		return 0, fmt.Errorf("window count %d: %w", n, ErrCorrupt)
	}
	// The windows are followed by at least a pane byte, so a count beyond the
	// bytes left cannot be whole; checking it bounds the allocation below.
	if int(n) > len(b)-p {
		return 0, fmt.Errorf("window count %d with %d bytes left: %w", n, len(b)-p, ErrTruncated)
	}
	if e == nil {
		p, err = skipN(win, b, p, int64(n))
		if err != nil {
			return 0, fmt.Errorf("windows: %w", err)
		}
	} else {
		e.Timestamp = ts
		e.Windows = make([][]byte, n)
		for i := range e.Windows {
			q, err := win.skip(b, p)
			if err != nil {
				return 0, fmt.Errorf("window %d of %d: %w", i, n, err)
			}
			e.Windows[i] = b[p:q:q]
			p = q
		}
	}
	q, err := skipPane(b, p)
	if err != nil {
		return 0, err
	}
	if e != nil {
		e.Pane = b[p:q:q]
	}
	return q, nil
}

// AppendWindowedValue appends a windowed value: the timestamp, the windows
// (an int32 count, then each encoded window as given), the encoded pane
// (PaneNoFiring if pane is nil) and the encoded value.
func AppendWindowedValue(dst []byte, timestamp int64, windows [][]byte, pane []byte, value []byte) []byte {
	dst = AppendInstant(dst, timestamp)
	dst = AppendIterable(dst, windows)
	if pane == nil {
		pane = PaneNoFiring
	}
	dst = append(dst, pane...)
	return append(dst, value...)
}
