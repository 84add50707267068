package wire

import "fmt"

// Timing is a pane's timing relative to the watermark, with Beam's values.
type Timing int

// Pane timings, numbered as in Beam's PaneInfo encoding.
const (
	Early   Timing = 0
	OnTime  Timing = 1
	Late    Timing = 2
	Unknown Timing = 3
)

func (t Timing) String() string {
	switch t {
	case Early:
		return "EARLY"
	case OnTime:
		return "ON_TIME"
	case Late:
		return "LATE"
	case Unknown:
		return "UNKNOWN"
	}
	return fmt.Sprintf("Timing(%d)", int(t))
}

// Pane describes which firing of a window produced an element.
type Pane struct {
	IsFirst, IsLast bool
	Timing          Timing
	// Index counts the firings of the window, from 0.
	Index int64
	// OnTimeIndex counts the non-early firings, from 0; -1 for early panes.
	OnTimeIndex int64
}

// Pane header byte: bit 0 first, bit 1 last, bits 2-3 timing, high nibble
// the encoding (how many varint indexes follow).
const (
	paneFirst       = 0x01
	paneLast        = 0x02
	paneNoIndex     = 0 << 4
	paneOneIndex    = 1 << 4
	paneTwoIndexes  = 2 << 4
	paneTimingShift = 2
)

// PaneNoFiring is the encoded default pane (first and last, UNKNOWN timing,
// index 0), the single byte 0x0F that Beam writes for elements not produced
// by a trigger.
var PaneNoFiring = []byte{paneFirst | paneLast | byte(Unknown)<<paneTimingShift}

// AppendPane appends p as Beam encodes a PaneInfo: one header byte, then
// none, one or two varint indexes. As in Beam, an UNKNOWN pane or one with
// both indexes 0 is written as the header byte alone, and an early pane
// writes only Index (its OnTimeIndex reads back as -1).
func AppendPane(dst []byte, p Pane) []byte {
	h := byte(p.Timing&3) << paneTimingShift
	if p.IsFirst {
		h |= paneFirst
	}
	if p.IsLast {
		h |= paneLast
	}
	switch {
	case (p.Index == 0 && p.OnTimeIndex == 0) || p.Timing == Unknown:
		return append(dst, h|paneNoIndex)
	case p.Index == p.OnTimeIndex || p.Timing == Early:
		dst = append(dst, h|paneOneIndex)
		return AppendVarint(dst, uint64(p.Index))
	default:
		dst = append(dst, h|paneTwoIndexes)
		dst = AppendVarint(dst, uint64(p.Index))
		return AppendVarint(dst, uint64(p.OnTimeIndex))
	}
}

// ReadPane reads an encoded pane from the front of b and returns it with the
// number of bytes it took.
func ReadPane(b []byte) (Pane, int, error) {
	if len(b) == 0 {
		return Pane{}, 0, fmt.Errorf("pane: %w", ErrTruncated)
	}
	h := b[0]
	p := Pane{
		IsFirst: h&paneFirst != 0,
		IsLast:  h&paneLast != 0,
		Timing:  Timing(h>>paneTimingShift) & 3,
	}
	n := 1
	switch h &^ 0x0f {
	case paneNoIndex:
		return p, n, nil
	case paneOneIndex:
		idx, m, err := ReadVarint(b[n:])
		if err != nil {
			return Pane{}, 0, fmt.Errorf("pane index: %w", err)
		}
		n += m
		p.Index = int64(idx)
		p.OnTimeIndex = p.Index
		if p.Timing == Early {
			p.OnTimeIndex = -1
		}
		return p, n, nil
	case paneTwoIndexes:
		idx, m, err := ReadVarint(b[n:])
		if err != nil {
			return Pane{}, 0, fmt.Errorf("pane index: %w", err)
		}
		n += m
		onTime, m, err := ReadVarint(b[n:])
		if err != nil {
			return Pane{}, 0, fmt.Errorf("pane on-time index: %w", err)
		}
		n += m
		p.Index, p.OnTimeIndex = int64(idx), int64(onTime)
		return p, n, nil
	}
	return Pane{}, 0, fmt.Errorf("pane header %#02x has unknown encoding %d: %w", h, h>>4, ErrCorrupt)
}

// skipPane returns the offset just past the pane at b[p:].
func skipPane(b []byte, p int) (int, error) {
	_, n, err := ReadPane(b[p:])
	if err != nil {
		return 0, err
	}
	return p + n, nil
}
