package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadComponent is wrapped by the errors ReadComponent returns for bytes
// that are not a valid component.
var ErrBadComponent = errors.New("state: malformed key component")

const (
	escByte  = 0x00
	escZero  = 0xFF // 00 FF encodes a 0x00 byte
	escEnd   = 0x01 // 00 01 ends a component
	tsLength = 8
)

// AppendComponent appends the order-preserving encoding of comp to dst and
// returns the extended slice: every 0x00 byte becomes 00 FF and the component
// ends with 00 01. For any a, b: bytes.Compare(enc(a), enc(b)) ==
// bytes.Compare(a, b), and concatenations of components sort as tuples.
func AppendComponent(dst, comp []byte) []byte {
	for {
		i := indexZero(comp)
		if i < 0 {
			break
		}
		dst = append(dst, comp[:i]...)
		dst = append(dst, escByte, escZero)
		comp = comp[i+1:]
	}
	dst = append(dst, comp...)
	return append(dst, escByte, escEnd)
}

// ReadComponent decodes the component at the start of src and returns it with
// the bytes after it. When the component contains no escaped 0x00, comp aliases
// src (capacity-limited, so appending to it never overwrites src); otherwise it
// is newly allocated. Malformed input returns an error wrapping ErrBadComponent.
func ReadComponent(src []byte) (comp, rest []byte, err error) {
	var out []byte // nil until the first escape
	start := 0
	for i := 0; ; {
		j := indexZero(src[i:])
		if j < 0 {
			return nil, nil, fmt.Errorf("%w: no terminator in %d bytes", ErrBadComponent, len(src))
		}
		i += j
		if i+1 >= len(src) {
			return nil, nil, fmt.Errorf("%w: truncated escape at offset %d", ErrBadComponent, i)
		}
		switch src[i+1] {
		case escEnd:
			if out == nil {
				return src[:i:i], src[i+2:], nil
			}
			out = append(out, src[start:i]...)
			return out, src[i+2:], nil
		case escZero:
			out = append(out, src[start:i]...)
			out = append(out, 0)
			i += 2
			start = i
		default:
			return nil, nil, fmt.Errorf("%w: invalid escape 00 %02x at offset %d", ErrBadComponent, src[i+1], i)
		}
	}
}

func indexZero(b []byte) int { return bytes.IndexByte(b, 0) }

// appendTimestamp appends t as 8 big-endian bytes with the sign bit flipped,
// so byte order equals numeric order.
func appendTimestamp(dst []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(t)^(1<<63))
}

func readTimestamp(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
}
