package portable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/weir-runner/weir/savepoint"
	"github.com/weir-runner/weir/state"
)

// NoTimestamp is the Timestamp of the GroupValueRecords of a triggered
// GroupByKey, which keeps no timestamp per element (its panes' timestamps
// come from the trigger state).
const NoTimestamp int64 = math.MinInt64

// Beam's time domains as the state package stores them (TimerID.Domain).
const (
	domainEvent      = 1
	domainProcessing = 2
	maxUserDomain    = 3 // larger domains are the runner's own timers
)

func toDomain(d int) (savepoint.TimeDomain, error) {
	switch d {
	case domainEvent:
		return savepoint.EventTime, nil
	case domainProcessing:
		return savepoint.ProcessingTime, nil
	}
	return "", fmt.Errorf("time domain %d has no savepoint form", d)
}

func fromDomain(d savepoint.TimeDomain) (int, error) {
	switch d {
	case savepoint.EventTime:
		return domainEvent, nil
	case savepoint.ProcessingTime:
		return domainProcessing, nil
	}
	return 0, fmt.Errorf("unknown time domain %q", d)
}

// timerHead is the encoded form of a timer (beam:coder:timer:v1, one
// window) up to its pane: key | varint length of tag | tag | window count
// 1 (4 bytes) | window | clear bit 0 | fire | hold (instants: 8 bytes big
// endian, sign bit flipped). It is how the engine stores a timer's
// Encoded form for the SDK, one window per timer.
func timerHead(key, tag, window []byte, fire, hold int64) []byte {
	b := make([]byte, 0, len(key)+len(tag)+len(window)+32)
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(tag)))
	b = append(append(b, tag...), 0, 0, 0, 1)
	b = append(append(b, window...), 0)
	b = binary.BigEndian.AppendUint64(b, uint64(fire)^(1<<63))
	return binary.BigEndian.AppendUint64(b, uint64(hold)^(1<<63))
}

// paneOf returns the pane at the end of a timer's encoded form.
func paneOf(t state.Timer) ([]byte, error) {
	head := timerHead(t.Key, t.Tag, t.Window, t.Fire, t.Hold)
	if !bytes.HasPrefix(t.Encoded, head) {
		return nil, errors.New("its encoded form does not match its key, tag, window, fire time and hold")
	}
	return bytes.Clone(t.Encoded[len(head):]), nil
}

// The pieces of a triggered GroupByKey's state kept in TriggerRecords:
// one record per stored cell entry or timer of a key and window.
const (
	pieceCell  = 'c' // 'c' | string state ID | value (the rest)
	pieceTimer = 't' // 't' | uvarint domain | string family | bytes tag | varint fire | varint hold | bytes encoded
)

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBytes(b, v []byte) []byte {
	return append(binary.AppendUvarint(b, uint64(len(v))), v...)
}

func cellPiece(stateID string, value []byte) []byte {
	return append(appendString([]byte{pieceCell}, stateID), value...)
}

func timerPiece(t state.Timer) []byte {
	b := binary.AppendUvarint([]byte{pieceTimer}, uint64(t.Domain))
	b = appendBytes(appendString(b, t.Family), t.Tag)
	b = binary.AppendVarint(binary.AppendVarint(b, t.Fire), t.Hold)
	return appendBytes(b, t.Encoded)
}

// piece reads a piece's fields; the first error sticks.
type piece struct {
	b   []byte
	err error
}

func (p *piece) fail(what string) {
	if p.err == nil {
		p.err = fmt.Errorf("malformed %s", what)
	}
}

func (p *piece) uvarint(what string) uint64 {
	v, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.fail(what)
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *piece) varint(what string) int64 {
	v, n := binary.Varint(p.b)
	if n <= 0 {
		p.fail(what)
		return 0
	}
	p.b = p.b[n:]
	return v
}

func (p *piece) bytes(what string) []byte {
	n := p.uvarint(what + " length")
	if n > uint64(len(p.b)) {
		p.fail(what)
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

// decodePiece returns a TriggerRecord's cell (stateID, value) or timer.
func decodePiece(r *savepoint.TriggerRecord) (stateID string, value []byte, t *state.Timer, err error) {
	if len(r.State) == 0 {
		return "", nil, nil, errors.New("empty trigger state")
	}
	p := &piece{b: r.State[1:]}
	switch r.State[0] {
	case pieceCell:
		stateID = string(p.bytes("state ID"))
		value = p.b
		p.b = nil
	case pieceTimer:
		d := p.uvarint("time domain")
		if d > math.MaxUint8 {
			p.fail("time domain")
		}
		t = &state.Timer{TimerID: state.TimerID{KeyGroup: r.KeyGroup, Domain: int(d), Key: r.Key, Window: r.Window}}
		t.Family = string(p.bytes("timer family"))
		t.Tag = p.bytes("timer tag")
		t.Fire, t.Hold = p.varint("fire time"), p.varint("hold")
		t.Encoded = p.bytes("encoded timer")
	default:
		return "", nil, nil, fmt.Errorf("unknown trigger state piece %q", r.State[0])
	}
	if p.err == nil && len(p.b) > 0 {
		p.err = fmt.Errorf("%d bytes after the last field", len(p.b))
	}
	if p.err != nil {
		return "", nil, nil, fmt.Errorf("trigger state piece: %w", p.err)
	}
	return stateID, value, t, nil
}

// The triggered GroupByKey's values cell holds one value per append,
// prefixed by its varint length.
func unframeValue(v []byte) ([]byte, error) {
	n, k := binary.Uvarint(v)
	if k <= 0 || n != uint64(len(v)-k) {
		return nil, fmt.Errorf("buffered value of %d bytes is not one length-prefixed value", len(v))
	}
	return v[k:], nil
}

func frameValue(v []byte) []byte {
	return append(binary.AppendUvarint(make([]byte, 0, len(v)+binary.MaxVarintLen64), uint64(len(v))), v...)
}
