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
	return appendTimerHead(make([]byte, 0, len(key)+len(tag)+len(window)+32), key, tag, window, fire, hold)
}

// appendTimerHead appends timerHead's bytes to b.
func appendTimerHead(b, key, tag, window []byte, fire, hold int64) []byte {
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
// one record per stored cell entry or timer of a key and window, a kind
// byte then fields, each a uvarint length and its bytes.
const (
	pieceCell  = 'c' // state ID, value
	pieceTimer = 't' // domain (1 byte), family, tag, fire, hold (8 bytes each, big endian), encoded timer
)

func appendFields(kind byte, fields ...[]byte) []byte {
	b := []byte{kind}
	for _, f := range fields {
		b = append(binary.AppendUvarint(b, uint64(len(f))), f...)
	}
	return b
}

// splitFields returns the n fields after a piece's kind byte.
func splitFields(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for len(b) > 0 {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("malformed field %d", len(out))
		}
		out = append(out, b[k:k+int(l):k+int(l)])
		b = b[k+int(l):]
	}
	if len(out) != n {
		return nil, fmt.Errorf("%d fields, want %d", len(out), n)
	}
	return out, nil
}

func cellPiece(stateID string, value []byte) []byte {
	return appendFields(pieceCell, []byte(stateID), value)
}

func timerPiece(t state.Timer) []byte {
	return appendFields(pieceTimer, []byte{byte(t.Domain)}, []byte(t.Family), t.Tag,
		binary.BigEndian.AppendUint64(nil, uint64(t.Fire)), binary.BigEndian.AppendUint64(nil, uint64(t.Hold)), t.Encoded)
}

// decodePiece returns a TriggerRecord's cell (stateID, value) or timer.
func decodePiece(r *savepoint.TriggerRecord) (stateID string, value []byte, t *state.Timer, err error) {
	if len(r.State) == 0 {
		return "", nil, nil, errors.New("empty trigger state")
	}
	switch r.State[0] {
	case pieceCell:
		f, err := splitFields(r.State[1:], 2)
		if err != nil {
			return "", nil, nil, fmt.Errorf("trigger state cell: %w", err)
		}
		return string(f[0]), f[1], nil, nil
	case pieceTimer:
		f, err := splitFields(r.State[1:], 6)
		if err == nil && (len(f[0]) != 1 || len(f[3]) != 8 || len(f[4]) != 8) {
			err = errors.New("malformed domain, fire time or hold")
		}
		if err != nil {
			return "", nil, nil, fmt.Errorf("trigger state timer: %w", err)
		}
		t = &state.Timer{
			TimerID: state.TimerID{KeyGroup: r.KeyGroup, Domain: int(f[0][0]), Family: string(f[1]), Key: r.Key, Window: r.Window, Tag: f[2]},
			Fire:    int64(binary.BigEndian.Uint64(f[3])), Hold: int64(binary.BigEndian.Uint64(f[4])), Encoded: f[5],
		}
		return "", nil, t, nil
	}
	return "", nil, nil, fmt.Errorf("unknown trigger state piece %q", r.State[0])
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
