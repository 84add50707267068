package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

var (
	// ErrTruncated is wrapped by every error caused by input that ends in the
	// middle of an encoded value.
	ErrTruncated = errors.New("wire: truncated input")
	// ErrCorrupt is wrapped by every error caused by input that is not a valid
	// encoding (a bad varint, flag byte, count or pane header).
	ErrCorrupt = errors.New("wire: corrupt input")
	// ErrNotWalkable is wrapped by errors about coders the runner cannot walk
	// (they must be length-prefixed first; see LengthPrefixUnknown).
	ErrNotWalkable = errors.New("wire: coder cannot be walked")
)

// Beam's timestamp bounds, in milliseconds since the epoch (mtime).
const (
	// MinTimestamp is Beam's "-infinity".
	MinTimestamp int64 = math.MinInt64 / 1000
	// MaxTimestamp is Beam's "+infinity".
	MaxTimestamp int64 = math.MaxInt64 / 1000
	// EndOfGlobalWindow is the max timestamp of the global window: one day
	// before MaxTimestamp.
	EndOfGlobalWindow int64 = MaxTimestamp - 24*60*60*1000
)

// AppendVarint appends v as an unsigned LEB128 varint, Beam's varint
// encoding. Signed Beam varints (int64) are written as uint64(v).
func AppendVarint(dst []byte, v uint64) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// ReadVarint reads a varint from the front of b, returning its value and
// length. Like Beam, it accepts at most 64 bits of payload in at most ten
// bytes.
func ReadVarint(b []byte) (uint64, int, error) {
	var v uint64
	var shift uint
	for i, x := range b {
		bits := uint64(x & 0x7f)
		if shift >= 64 || (shift == 63 && bits > 1) {
			return 0, 0, fmt.Errorf("varint longer than 64 bits: %w", ErrCorrupt)
		}
		v |= bits << shift
		if x < 0x80 {
			return v, i + 1, nil
		}
		shift += 7
	}
	return 0, 0, fmt.Errorf("varint: %w", ErrTruncated)
}

// readLen reads a varint length at b[p:] and checks that that many bytes
// follow it. It returns the start and end of the payload.
func readLen(b []byte, p int, what string) (start, end int, err error) {
	l, n, err := ReadVarint(b[p:])
	if err != nil {
		return 0, 0, fmt.Errorf("%s length: %w", what, err)
	}
	p += n
	if l > uint64(len(b)-p) {
		return 0, 0, fmt.Errorf("%s of %d bytes with %d left: %w", what, l, len(b)-p, ErrTruncated)
	}
	return p, p + int(l), nil
}

// need checks that n bytes are available at b[p:].
func need(b []byte, p, n int, what string) error {
	if len(b)-p < n {
		return fmt.Errorf("%s needs %d bytes, %d left: %w", what, n, len(b)-p, ErrTruncated)
	}
	return nil
}

// readInt32 reads a big-endian int32 at b[p:].
func readInt32(b []byte, p int, what string) (int32, error) {
	if err := need(b, p, 4, what); err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(b[p:])), nil
}

// AppendInstant appends a Beam instant (milliseconds since the epoch) the way
// Beam encodes event times: big-endian uint64 of ms shifted by 2^63, so that
// byte order is time order.
func AppendInstant(dst []byte, ms int64) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(ms)^(1<<63))
}

// ReadInstant reads an instant from the first 8 bytes of b.
func ReadInstant(b []byte) (int64, error) {
	if err := need(b, 0, 8, "instant"); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)), nil
}

// GlobalWindow returns the encoded global window, which is empty.
func GlobalWindow() []byte { return []byte{} }

// AppendIntervalWindow appends an interval window [start, end) as Beam's
// interval_window coder writes it: the end instant, then the duration
// end-start as a varint.
func AppendIntervalWindow(dst []byte, start, end int64) []byte {
	dst = AppendInstant(dst, end)
	return AppendVarint(dst, uint64(end-start))
}

// ReadIntervalWindow reads an interval window from the front of b.
func ReadIntervalWindow(b []byte) (start, end int64, err error) {
	end, err = ReadInstant(b)
	if err != nil {
		return 0, 0, fmt.Errorf("interval window end: %w", err)
	}
	d, _, err := ReadVarint(b[8:])
	if err != nil {
		return 0, 0, fmt.Errorf("interval window duration: %w", err)
	}
	return end - int64(d), end, nil
}

// skipIntervalWindow returns the offset just past an interval window at b[p:].
func skipIntervalWindow(b []byte, p int) (int, error) {
	if err := need(b, p, 8, "interval window end"); err != nil {
		return 0, err
	}
	_, n, err := ReadVarint(b[p+8:])
	if err != nil {
		return 0, fmt.Errorf("interval window duration: %w", err)
	}
	return p + 8 + n, nil
}

// WindowMaxTimestamp returns the max timestamp of the encoded window w of the
// given window coder: EndOfGlobalWindow for the global window, end-1 for an
// interval window.
func WindowMaxTimestamp(windowCoder *Coder, w []byte) (int64, error) {
	if windowCoder == nil {
		return 0, errors.New("wire: window max timestamp: nil window coder")
	}
	switch windowCoder.URN {
	case URNGlobalWindow:
		return EndOfGlobalWindow, nil
	case URNIntervalWindow:
		_, end, err := ReadIntervalWindow(w)
		if err != nil {
			return 0, fmt.Errorf("wire: window max timestamp: %w", err)
		}
		return end - 1, nil
	}
	return 0, fmt.Errorf("wire: window max timestamp of %s window: %w", windowCoder.URN, ErrNotWalkable)
}

// AppendIterable appends an iterable with a known count: the count as a
// big-endian int32, then each value's bytes as given (already encoded in the
// nested context).
func AppendIterable(dst []byte, values [][]byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(int32(len(values))))
	for _, v := range values {
		dst = append(dst, v...)
	}
	return dst
}
