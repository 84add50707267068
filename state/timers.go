package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// TimerID names one timer: setting it again replaces it.
type TimerID struct {
	KeyGroup  int
	Domain    int // Beam's TimeDomain: 1 event time, 2 processing time
	Transform string
	Family    string
	Key       []byte
	Window    []byte
	Tag       []byte
}

// Timer is a set timer: its ID, when it fires, and its encoded form as the
// SDK sent it (returned to the SDK unchanged when it fires).
type Timer struct {
	TimerID
	Fire int64
	// Hold is the timer's output timestamp: the subtask's output watermark
	// may not pass it while the timer is set. NoHold (Beam's maximum
	// timestamp, or later) holds nothing and is not stored as a hold.
	Hold    int64
	Encoded []byte
}

// NoHold is the Hold of a timer that holds no watermark: Beam's maximum
// timestamp, which no watermark passes before the end of input.
const NoHold int64 = math.MaxInt64 / 1000

// holdKey, revKey and indexKey are the keys of a timer; the append forms
// append them to dst, for a timer of key group kg and domain whose ID has
// the suffix suf (TimerID.suffix).
func holdKey(kg int, hold int64, id TimerID) []byte {
	return id.suffix(appendHoldKey(nil, kg, hold, byte(id.Domain), nil))
}

func (t TimerID) revKey() []byte { return t.suffix(appendRevKey(nil, t.KeyGroup, byte(t.Domain), nil)) }

func indexKey(kg int, fire int64, id TimerID) []byte {
	return id.suffix(appendIndexKey(nil, kg, byte(id.Domain), fire, nil))
}

func appendHoldKey(dst []byte, kg int, hold int64, domain byte, suf []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(kg))
	dst = appendTimestamp(append(dst, spaceTimerHold), hold)
	return append(append(dst, domain), suf...)
}

func appendRevKey(dst []byte, kg int, domain byte, suf []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(kg))
	return append(append(dst, spaceTimerRev, domain), suf...)
}

func appendIndexKey(dst []byte, kg int, domain byte, fire int64, suf []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(kg))
	dst = appendTimestamp(append(dst, spaceTimer, domain), fire)
	return append(dst, suf...)
}

func (t TimerID) suffix(b []byte) []byte {
	b = AppendComponent(b, []byte(t.Transform))
	b = AppendComponent(b, []byte(t.Family))
	b = AppendComponent(b, t.Key)
	b = AppendComponent(b, t.Window)
	return AppendComponent(b, t.Tag)
}

// ClearTimer removes a timer if it is set.
func (b *Bundle) ClearTimer(id TimerID) error {
	fire, hold, ok, err := b.lookupTimer(id)
	if err != nil || !ok {
		return err
	}
	return b.deleteTimer(id, fire, hold)
}

// lookupTimer returns the fire time and hold of a set timer, and false if
// it is not set.
func (b *Bundle) lookupTimer(id TimerID) (fire, hold int64, ok bool, err error) {
	if b.load != nil {
		return 0, 0, false, nil // a load's DB holds nothing to replace
	}
	rk := id.revKey()
	if b.db.written.never(rk) {
		return 0, 0, false, nil
	}
	v, closer, err := b.b.Get(rk)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, fmt.Errorf("looking up timer %s/%s: %w", id.Transform, id.Family, err)
	}
	defer closer.Close()
	fire = readTimestamp(v)
	hold = fire
	if len(v) >= 16 {
		hold = readTimestamp(v[8:])
	}
	return fire, hold, true, nil
}

// deleteTimer removes the entries of a timer set to fire at fire with hold.
func (b *Bundle) deleteTimer(id TimerID, fire, hold int64) error {
	if err := b.b.Delete(indexKey(id.KeyGroup, fire, id), nil); err != nil {
		return fmt.Errorf("clearing timer: %w", err)
	}
	if hold < NoHold {
		if err := b.b.Delete(holdKey(id.KeyGroup, hold, id), nil); err != nil {
			return fmt.Errorf("clearing timer hold: %w", err)
		}
	}
	if err := b.b.Delete(id.revKey(), nil); err != nil {
		return fmt.Errorf("clearing timer: %w", err)
	}
	return nil
}

// PutFixedTimer writes a timer whose ID fixes its fire time and that
// holds nothing (t.Hold is NoHold), such as a window's expiry timer: only
// its index entry, since it is never replaced at another time and so
// never looked up. Setting it twice is one timer. Clear it with
// ClearDueTimer, never ClearTimer.
func (b *Bundle) PutFixedTimer(t Timer) error {
	if t.Hold < NoHold {
		return fmt.Errorf("fixed timer %s/%s holds %d: fixed timers hold nothing", t.Transform, t.Family, t.Hold)
	}
	b.sbuf = t.suffix(b.sbuf[:0])
	b.kbuf = appendIndexKey(b.kbuf[:0], t.KeyGroup, byte(t.Domain), t.Fire, b.sbuf)
	if err := b.set(b.kbuf, t.Encoded); err != nil {
		return fmt.Errorf("setting timer: %w", err)
	}
	return nil
}

// ClearDueTimer removes a fixed timer (PutFixedTimer) that DueTimersIn
// returned. It also deletes the lookup entry that PutTimer wrote for such
// timers before they were fixed, which state restored from older
// checkpoints may still hold.
func (b *Bundle) ClearDueTimer(t Timer) error {
	if err := b.b.Delete(indexKey(t.KeyGroup, t.Fire, t.TimerID), nil); err != nil {
		return fmt.Errorf("clearing timer: %w", err)
	}
	if err := b.b.Delete(t.revKey(), nil); err != nil {
		return fmt.Errorf("clearing timer: %w", err)
	}
	return nil
}

// SetTimer sets (or replaces) a timer. Setting a timer again to the fire
// time and hold it has writes nothing (a user DoFn that sets its timer at
// the window's end on every element would otherwise delete and rewrite
// its entries each time).
func (b *Bundle) SetTimer(t Timer) error {
	fire, hold, ok, err := b.lookupTimer(t.TimerID)
	if err != nil {
		return err
	}
	if ok {
		if fire == t.Fire && hold == t.Hold {
			return nil
		}
		if err := b.deleteTimer(t.TimerID, fire, hold); err != nil {
			return err
		}
	}
	return b.PutTimer(t)
}

// PutTimer sets a timer without looking for an earlier setting to
// replace: for timers whose fire time and hold follow from their ID (a
// window's garbage collection timer), where setting one again writes the
// same keys. It saves SetTimer's point lookup.
func (b *Bundle) PutTimer(t Timer) error {
	// Keys are built in the bundle's buffers: set copies them.
	b.sbuf = t.suffix(b.sbuf[:0])
	suf, d := b.sbuf, byte(t.Domain)
	b.kbuf = appendIndexKey(b.kbuf[:0], t.KeyGroup, d, t.Fire, suf)
	if err := b.set(b.kbuf, t.Encoded); err != nil {
		return fmt.Errorf("setting timer: %w", err)
	}
	b.kbuf = appendRevKey(b.kbuf[:0], t.KeyGroup, d, suf)
	b.db.written.add(b.kbuf)
	var v [2 * tsLength]byte
	if err := b.set(b.kbuf, appendTimestamp(appendTimestamp(v[:0], t.Fire), t.Hold)); err != nil {
		return fmt.Errorf("setting timer: %w", err)
	}
	if t.Hold < NoHold {
		b.kbuf = appendHoldKey(b.kbuf[:0], t.KeyGroup, t.Hold, d, suf)
		if err := b.set(b.kbuf, nil); err != nil {
			return fmt.Errorf("setting timer hold: %w", err)
		}
	}
	return nil
}

// maxUserDomain is the last of Beam's time domains; larger domain numbers
// are the runner's own timers, which DueTimers does not return.
const maxUserDomain = 3

// DueTimers returns up to limit timers of any of Beam's time domains, in key groups
// [kgStart,kgEnd), that fire at or before upTo. They stay set until cleared.
func (b *Bundle) DueTimers(kgStart, kgEnd int, upTo int64, limit int) ([]Timer, error) {
	var out []Timer
	for d := 0; d <= maxUserDomain && len(out) < limit; d++ {
		ts, err := b.DueTimersIn(d, kgStart, kgEnd, upTo, limit-len(out))
		if err != nil {
			return nil, err
		}
		out = append(out, ts...)
	}
	return out, nil
}

// DueTimersIn returns up to limit timers of one time domain, in key groups
// [kgStart,kgEnd), that fire at or before upTo, earliest first within each
// key group. They stay set until cleared.
func (b *Bundle) DueTimersIn(domain, kgStart, kgEnd int, upTo int64, limit int) ([]Timer, error) {
	var out []Timer
	for kg := kgStart; kg < kgEnd && len(out) < limit; kg++ {
		lo := append(binary.BigEndian.AppendUint16(nil, uint16(kg)), spaceTimer, byte(domain))
		hi := appendTimestamp(append([]byte(nil), lo...), upTo)
		hi = prefixEnd(hi)
		err := b.scan(lo, hi, false, func(k, v []byte) error {
			if len(out) >= limit {
				return errStop
			}
			rest := k[len(lo):]
			if len(rest) < 8 {
				return fmt.Errorf("timer index key too short")
			}
			t := Timer{Fire: readTimestamp(rest[:8]), Encoded: append([]byte(nil), v...)}
			t.KeyGroup, t.Domain = kg, domain
			rest = rest[8:]
			var parts [5][]byte
			for i := range parts {
				var err error
				if parts[i], rest, err = ReadComponent(rest); err != nil {
					return fmt.Errorf("reading timer index key: %w", err)
				}
			}
			t.Transform, t.Family = string(parts[0]), string(parts[1])
			t.Key, t.Window, t.Tag = clone(parts[2]), clone(parts[3]), clone(parts[4])
			out = append(out, t)
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, err
		}
	}
	return out, nil
}

var errStop = errors.New("stop")

func clone(b []byte) []byte { return append([]byte{}, b...) }

// MinHold returns the earliest output timestamp held by a set timer in key
// groups [kgStart,kgEnd), and false if none is set.
func (b *Bundle) MinHold(kgStart, kgEnd int) (int64, bool, error) {
	best, found := int64(0), false
	for kg := kgStart; kg < kgEnd; kg++ {
		lo := append(binary.BigEndian.AppendUint16(nil, uint16(kg)), spaceTimerHold)
		err := b.scan(lo, prefixEnd(lo), false, func(k, _ []byte) error {
			if rest := k[len(lo):]; len(rest) >= 8 {
				if h := readTimestamp(rest); !found || h < best {
					best, found = h, true
				}
			}
			return errStop
		})
		if err != nil && !errors.Is(err, errStop) {
			return 0, false, err
		}
	}
	return best, found, nil
}
