package engine

import (
	"context"
	"fmt"

	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// Beam's time domains.
const (
	anyDomain      = -1
	eventTime      = 1
	processingTime = 2
)

// fireTimers fires, bundle by bundle, every timer of any domain due at or
// before upTo, including timers that firing sets.
func (t *sdkTask) fireTimers(ctx context.Context, upTo int64) error {
	return t.fireTimersIn(ctx, anyDomain, upTo)
}

// fireTimersIn fires the timers of one domain (or anyDomain) due at or
// before upTo, including timers that firing sets.
func (t *sdkTask) fireTimersIn(ctx context.Context, domain int, upTo int64) error {
	if t.keyed == nil || len(t.keyed.families) == 0 {
		return nil
	}
	if domain == processingTime && !t.keyed.hasDomain(processingTime) {
		return nil
	}
	for {
		peek := t.keyed.db.NewBundle()
		var due []state.Timer
		var err error
		if domain == anyDomain {
			due, err = peek.DueTimers(t.keyed.kgStart, t.keyed.kgEnd, upTo, t.e.o.Limits.TimersPerFiring)
		} else {
			due, err = peek.DueTimersIn(domain, t.keyed.kgStart, t.keyed.kgEnd, upTo, t.e.o.Limits.TimersPerFiring)
		}
		peek.Discard()
		if err != nil {
			return fmt.Errorf("%s: reading due timers: %w", t.name(), err)
		}
		if len(due) == 0 {
			return nil
		}
		if err := t.bundle(ctx, nil, t.keyed.firable(due)); err != nil {
			return err
		}
	}
}

// dropExpired removes, for a stateful stage, input elements whose windows
// have all expired: their state is gone, so Beam drops them as too late.
func (t *sdkTask) dropExpired(input [][]byte) ([][]byte, error) {
	k := t.keyed
	if k == nil || k.window == nil || k.window.URN == wire.URNGlobalWindow || t.inWM <= wire.MinTimestamp || t.inWM >= wire.MaxTimestamp {
		return input, nil
	}
	out := input[:0]
	for _, c := range input {
		var kept []byte
		dropped := false
		err := t.inWV.ForEach(c, func(e wire.Element) error {
			for _, w := range e.Windows {
				if at, ok := k.expiry(w); !ok || at >= t.inWM {
					kept = append(kept, e.Raw...)
					return nil
				}
			}
			dropped = true
			t.expired++
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: reading input: %w", t.name(), err)
		}
		if !dropped {
			out = append(out, c)
		} else if len(kept) > 0 {
			out = append(out, kept)
		}
	}
	return out, nil
}

// expireState clears the state of every window that expired by wm (after
// its timers have fired).
func (t *sdkTask) expireState(wm int64) error {
	if t.keyed == nil {
		return nil
	}
	for {
		b := t.keyed.db.NewBundle()
		due, err := b.DueTimersIn(gcDomain, t.keyed.kgStart, t.keyed.kgEnd, wm, t.e.o.Limits.TimersPerFiring)
		if err == nil {
			for _, tm := range due {
				if err = t.keyed.expire(b, tm); err != nil {
					break
				}
			}
		}
		if err != nil {
			b.Discard()
			return fmt.Errorf("%s: expiring state: %w", t.name(), err)
		}
		if len(due) == 0 {
			b.Discard()
			return nil
		}
		if err := b.Commit(); err != nil {
			return fmt.Errorf("%s: expiring state: %w", t.name(), err)
		}
	}
}

// timerHold is the watermark the set timers hold: just below the earliest
// output timestamp of a set timer (holdBelow), or the maximum timestamp if
// none is set.
func (t *sdkTask) timerHold() (int64, error) {
	if t.keyed == nil || len(t.keyed.families) == 0 {
		return wire.MaxTimestamp, nil
	}
	b := t.keyed.db.NewBundle()
	defer b.Discard()
	h, ok, err := b.MinHold(t.keyed.kgStart, t.keyed.kgEnd)
	if err != nil {
		return 0, fmt.Errorf("%s: reading timer holds: %w", t.name(), err)
	}
	if !ok {
		return wire.MaxTimestamp, nil
	}
	return holdBelow(h), nil
}
