package engine

import (
	"encoding/binary"
	"fmt"
	"sync"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
	"google.golang.org/protobuf/proto"
)

// keyed is the per-key state and timers of a stateful SDK subtask.
type keyed struct {
	db             *state.DB
	kgStart, kgEnd int
	maxP           int
	families       map[harness.TimerKey]timerCoder
	endTimers      []harness.TimerKey // every timer family
	// oneFamily: transforms whose due timers go to the SDK one family per
	// key and window in a bundle (firable).
	oneFamily map[string]bool

	// Window expiry: state of a window is cleared once the watermark passes
	// its end plus the allowed lateness.
	window   *wire.Coder
	lateness int64
	stateIDs map[string][]string // transform → its state IDs
}

// gcDomain is the runner's own timer domain for window expiry; these
// timers never reach the SDK.
const gcDomain = 8

// gcTransform names expiry timers.
const gcTransform = "\x00weir-expiry"

// expiry returns when the state of window w expires, and false for the
// global window (whose state lives until the end of input).
func (k *keyed) expiry(w []byte) (int64, bool) {
	if k.window == nil || k.window.URN == wire.URNGlobalWindow {
		return 0, false
	}
	maxTs, err := wire.WindowMaxTimestamp(k.window, w)
	if err != nil {
		return 0, false
	}
	return maxTs + k.lateness, true
}

// expire clears, in b, all state of a key in a window whose expiry timer fired.
func (k *keyed) expire(b *state.Bundle, tm state.Timer) error {
	for tr, ids := range k.stateIDs {
		for _, id := range ids {
			if err := b.ClearCell(state.Cell{KeyGroup: tm.KeyGroup, Transform: tr, StateID: id, Window: tm.Window, Key: tm.Key}); err != nil {
				return err
			}
		}
	}
	return b.ClearDueTimer(tm)
}

type timerCoder struct {
	key, window *wire.Coder
	domain      int
}

func newKeyed(db *state.DB, s *plan.Stage, comps *pipepb.Components, start, end, maxP int) (*keyed, error) {
	coders := comps.GetCoders()
	k := &keyed{db: db, kgStart: start, kgEnd: end, maxP: maxP, families: map[harness.TimerKey]timerCoder{}, stateIDs: map[string][]string{}}
	if err := k.initExpiry(s, comps); err != nil {
		return nil, err
	}
	for _, f := range s.Timers {
		c, err := wire.Build(coders, f.Coder)
		if err != nil {
			return nil, fmt.Errorf("timer family %s of %s: %w", f.Family, f.Transform, err)
		}
		if c.URN != wire.URNTimer || len(c.Components) != 2 {
			return nil, fmt.Errorf("timer family %s of %s: coder %s is not a timer coder", f.Family, f.Transform, c)
		}
		key := harness.TimerKey{Transform: f.Transform, Family: f.Family}
		k.families[key] = timerCoder{key: c.Components[0], window: c.Components[1], domain: int(f.Domain)}
		k.endTimers = append(k.endTimers, key)
	}
	if harness.GoEnvironment(comps.GetEnvironments()[s.EnvID]) {
		k.oneFamily = sharedDomains(s.Timers)
	}
	return k, nil
}

// sharedDomains returns the transforms that have two timer families in
// one time domain.
func sharedDomains(fams []plan.TimerFamily) map[string]bool {
	type td struct {
		transform string
		domain    pipepb.TimeDomain_Enum
	}
	n := map[td]int{}
	out := map[string]bool{}
	for _, f := range fams {
		k := td{f.Transform, f.Domain}
		if n[k]++; n[k] == 2 {
			out[f.Transform] = true
		}
	}
	return out
}

// firable returns the due timers (earliest first per key group) that go
// to the SDK in one bundle: all of them, except for a transform in
// oneFamily, where a key and window get only the timers of the family of
// its earliest due timer; the others stay set and go in a later bundle.
//
// The Go SDK fires a timer that user code sets in a bundle inline when it
// is earlier than a timer the runner sent for the same key and window,
// but it calls OnTimer with the family of the runner's timer
// (exec.ParDo.ProcessTimers passes its timerFamilyID): a timer set in
// family "tag" while "end" timers of the key are due reaches OnTimer as
// family "end". Timer bundles hold no input elements, so with one family
// per key and window only an OnTimer that sets an earlier timer of
// another family while more of its own family's timers of the key are due
// still meets that bug.
func (k *keyed) firable(due []state.Timer) []state.Timer {
	if len(k.oneFamily) == 0 {
		return due
	}
	type kw struct{ transform, key, window string }
	first := map[kw]string{}
	out := due[:0:0]
	for _, tm := range due {
		if !k.oneFamily[tm.Transform] {
			out = append(out, tm)
			continue
		}
		id := kw{tm.Transform, string(tm.Key), string(tm.Window)}
		f, ok := first[id]
		if !ok {
			first[id], f = tm.Family, tm.Family
		}
		if f == tm.Family {
			out = append(out, tm)
		}
	}
	return out
}

// initExpiry finds the stage's window coder, allowed lateness and state IDs.
func (k *keyed) initExpiry(s *plan.Stage, comps *pipepb.Components) error {
	for _, id := range s.Transforms {
		pdo := &pipepb.ParDoPayload{}
		t := comps.GetTransforms()[id]
		if t.GetSpec().GetUrn() != plan.URNParDo || proto.Unmarshal(t.GetSpec().GetPayload(), pdo) != nil {
			continue
		}
		for sid := range pdo.GetStateSpecs() {
			k.stateIDs[id] = append(k.stateIDs[id], sid)
		}
	}
	in, ok := comps.GetPcollections()[s.Input]
	if !ok {
		return nil // no input windows known: state lives until the end of input
	}
	ws := comps.GetWindowingStrategies()[in.GetWindowingStrategyId()]
	wc, err := wire.Build(comps.GetCoders(), ws.GetWindowCoderId())
	if err != nil {
		return fmt.Errorf("window coder of stage %s: %w", s.ID, err)
	}
	k.window, k.lateness = wc, ws.GetAllowedLateness()
	return nil
}

// hasDomain reports whether any timer family is in the time domain.
func (k *keyed) hasDomain(d int) bool {
	for _, f := range k.families {
		if f.domain == d {
			return true
		}
	}
	return false
}

// applyTimers records the timers a bundle set or cleared.
func (k *keyed) applyTimers(b *state.Bundle, out map[harness.TimerKey][]byte) error {
	for fk, data := range out {
		tc, ok := k.families[fk]
		if !ok {
			return fmt.Errorf("harness wrote timers for unknown family %s of %s", fk.Family, fk.Transform)
		}
		for len(data) > 0 {
			n, err := k.applyTimer(b, fk, tc, data)
			if err != nil {
				return fmt.Errorf("timer family %s of %s: %w", fk.Family, fk.Transform, err)
			}
			data = data[n:]
		}
	}
	return nil
}

// applyTimer decodes one timer (key, tag, windows, clear bit, fire and
// hold timestamps, pane) and sets or clears it in every window it names.
func (k *keyed) applyTimer(b *state.Bundle, fk harness.TimerKey, tc timerCoder, data []byte) (int, error) {
	p, err := tc.key.Skip(data)
	if err != nil {
		return 0, fmt.Errorf("reading timer key: %w", err)
	}
	key := data[:p]
	tagLen, n, err := wire.ReadVarint(data[p:])
	if err != nil || uint64(len(data)-p-n) < tagLen {
		return 0, fmt.Errorf("reading timer tag: %w", errOr(err))
	}
	tag := data[p+n : p+n+int(tagLen)]
	p += n + int(tagLen)
	if len(data)-p < 4 {
		return 0, fmt.Errorf("reading timer windows: truncated")
	}
	count := int(int32(binary.BigEndian.Uint32(data[p:])))
	p += 4
	// The windows are followed by at least the clear byte, so a count beyond
	// the bytes left is corrupt (and would make a global-window loop run away).
	if count < 0 || count > len(data)-p {
		return 0, fmt.Errorf("reading timer windows: count %d with %d bytes left", count, len(data)-p)
	}
	head := p - 4 // key and tag end here
	var windows [][]byte
	for i := 0; i < count; i++ {
		wn, err := tc.window.Skip(data[p:])
		if err != nil {
			return 0, fmt.Errorf("reading timer window: %w", err)
		}
		windows = append(windows, data[p:p+wn])
		p += wn
	}
	if p >= len(data) {
		return 0, fmt.Errorf("reading timer clear bit: truncated")
	}
	clear := data[p] != 0
	tail := p // the clear bit and what follows
	p++
	var fire, hold int64
	if !clear {
		if len(data)-p < 16 {
			return 0, fmt.Errorf("reading timer timestamps: truncated")
		}
		if fire, err = wire.ReadInstant(data[p:]); err != nil {
			return 0, err
		}
		if hold, err = wire.ReadInstant(data[p+8:]); err != nil {
			return 0, err
		}
		p += 16
		_, pn, err := wire.ReadPane(data[p:])
		if err != nil {
			return 0, fmt.Errorf("reading timer pane: %w", err)
		}
		p += pn
	}
	kg := state.KeyGroup(key, k.maxP)
	for _, w := range windows {
		id := state.TimerID{KeyGroup: kg, Domain: tc.domain, Transform: fk.Transform, Family: fk.Family, Key: key, Window: w, Tag: tag}
		if clear {
			err = b.ClearTimer(id)
		} else {
			// Each window's timer is stored naming only that window, so it
			// fires once per window.
			enc := append(append([]byte(nil), data[:head]...), 0, 0, 0, 1)
			enc = append(append(enc, w...), data[tail:p]...)
			err = b.SetTimer(state.Timer{TimerID: id, Fire: fire, Hold: hold, Encoded: enc})
		}
		if err != nil {
			return 0, err
		}
	}
	return p, nil
}

func errOr(err error) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("truncated")
}

// bundleState serves a bundle's state (harness.State): user state from
// the stateful stage's Pebble bundle b (nil for a stage without keyed
// state, whose user state requests are refused), side inputs from the
// stage's side inputs.
type bundleState struct {
	*sideState
	mu   sync.Mutex
	b    *state.Bundle
	maxP int
	k    *keyed          // for window expiry; nil: no expiry timers
	gc   map[string]bool // (key, window) given an expiry timer in this bundle
	id   []byte          // firstWrite's buffer
}

// firstWrite reports whether the bundle has yet to make sure the expiry
// timer of c's key and window exists, and notes that it has now.
func (h *bundleState) firstWrite(c state.Cell) bool {
	h.id = append(append(append(h.id[:0], c.Key...), 0), c.Window...)
	if h.gc[string(h.id)] { // no allocation for the lookup
		return false
	}
	if h.gc == nil {
		h.gc = map[string]bool{}
	}
	h.gc[string(h.id)] = true
	return true
}

// noteExpiryExists notes that a read found state in c: whoever wrote it
// set the expiry timer of c's key and window (the timer clears the state
// when it fires), so the bundle's writes there need not set it again.
func (h *bundleState) noteExpiryExists(c state.Cell) {
	if h.k != nil {
		h.firstWrite(c)
	}
}

// noteWrite makes sure the cell's window has an expiry timer.
func (h *bundleState) noteWrite(c state.Cell) error {
	if h.k == nil {
		return nil
	}
	at, ok := h.k.expiry(c.Window)
	if !ok {
		return nil
	}
	if !h.firstWrite(c) {
		return nil
	}
	// The fire time follows from the window: no earlier setting to replace.
	return h.b.PutFixedTimer(state.Timer{
		TimerID: state.TimerID{KeyGroup: c.KeyGroup, Domain: gcDomain, Transform: gcTransform, Key: c.Key, Window: c.Window},
		Fire:    at, Hold: wire.MaxTimestamp,
	})
}

// cell returns the state cell of c, or an error if the bundle has no
// keyed state.
func (h *bundleState) cell(c harness.Cell) (state.Cell, error) {
	if h.b == nil {
		return state.Cell{}, fmt.Errorf("user state request outside a stateful bundle")
	}
	return state.Cell{Transform: c.Transform, StateID: c.StateID, Window: c.Window, Key: c.Key, KeyGroup: state.KeyGroup(c.Key, h.maxP)}, nil
}

// read serves a read of user state: state found there means its key and
// window have their expiry timer (noteExpiryExists).
func (h *bundleState) read(c harness.Cell, op func(state.Cell) ([]byte, error)) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sc, err := h.cell(c)
	if err != nil {
		return nil, err
	}
	data, err := op(sc)
	if err == nil && len(data) > 0 {
		h.noteExpiryExists(sc)
	}
	return data, err
}

// write serves a write of user state; one that adds state (add) makes
// sure its window has an expiry timer.
func (h *bundleState) write(c harness.Cell, add bool, op func(state.Cell) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	sc, err := h.cell(c)
	if err != nil {
		return err
	}
	if add {
		if err := h.noteWrite(sc); err != nil {
			return err
		}
	}
	return op(sc)
}

func (h *bundleState) ReadBag(c harness.Cell) ([]byte, error) { return h.read(c, h.b.ReadBag) }
func (h *bundleState) AppendBag(c harness.Cell, data []byte) error {
	return h.write(c, true, func(sc state.Cell) error { return h.b.AppendBag(sc, data) })
}
func (h *bundleState) ClearBag(c harness.Cell) error { return h.write(c, false, h.b.ClearBag) }

func (h *bundleState) ReadMap(c harness.Cell, mapKey []byte) ([]byte, error) {
	return h.read(c, func(sc state.Cell) ([]byte, error) { return h.b.ReadMap(sc, mapKey) })
}
func (h *bundleState) AppendMap(c harness.Cell, mapKey, data []byte) error {
	return h.write(c, true, func(sc state.Cell) error { return h.b.AppendMap(sc, mapKey, data) })
}
func (h *bundleState) ClearMapKey(c harness.Cell, mapKey []byte) error {
	return h.write(c, false, func(sc state.Cell) error { return h.b.ClearMapKey(sc, mapKey) })
}
func (h *bundleState) MapKeys(c harness.Cell) ([]byte, error) { return h.read(c, h.b.MapKeys) }
func (h *bundleState) ClearMap(c harness.Cell) error          { return h.write(c, false, h.b.ClearMap) }

func (h *bundleState) ReadOrdered(c harness.Cell, start, end int64) ([]byte, error) {
	return h.read(c, func(sc state.Cell) ([]byte, error) { return h.b.ReadOrdered(sc, start, end) })
}
func (h *bundleState) AppendOrdered(c harness.Cell, data []byte) error {
	return h.write(c, true, func(sc state.Cell) error { return h.b.AppendOrdered(sc, data) })
}
func (h *bundleState) ClearOrdered(c harness.Cell, start, end int64) error {
	return h.write(c, false, func(sc state.Cell) error { return h.b.ClearOrdered(sc, start, end) })
}
