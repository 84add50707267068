package wire

import (
	"bytes"
	"fmt"
	"slices"
	"sort"
	"strconv"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// LengthPrefixUnknown adds to coders (in place) a version of coder id in
// which every coder the runner cannot walk is wrapped in length_prefix, and
// returns its ID.
//
// Walkable as they are: bytes, string_utf8, varint, bool, double,
// global_window, interval_window and length_prefix (whatever it wraps).
// Structural coders (kv, iterable, nullable, windowed_value,
// param_windowed_value, timer) are kept with their components rewritten.
// Anything else (row, the Go SDK's custom coder, state_backed_iterable,
// sharded_key, unknown URNs) is wrapped.
//
// If nothing needs to change, id is returned unchanged and coders is not
// modified. A rewritten coder X gets the ID X+"_lp" (with a numeric suffix if
// that ID is taken by a different coder), so repeated calls reuse the coders
// added by earlier ones.
func LengthPrefixUnknown(coders map[string]*pipepb.Coder, id string) (string, error) {
	r := rewriter{coders: coders, done: map[string]string{}, busy: map[string]bool{}}
	out, err := r.rewrite(id)
	if err != nil {
		return "", fmt.Errorf("wire: length-prefix unknown coders of %q: %w", id, err)
	}
	return out, nil
}

type rewriter struct {
	coders map[string]*pipepb.Coder
	done   map[string]string // old ID -> new ID
	busy   map[string]bool   // on the current path, to reject cycles
}

func (r *rewriter) rewrite(id string) (string, error) {
	if out, ok := r.done[id]; ok {
		return out, nil
	}
	c, ok := r.coders[id]
	if !ok || c == nil {
		return "", fmt.Errorf("coder %q not found", id)
	}
	if r.busy[id] {
		return "", fmt.Errorf("coder %q refers to itself", id)
	}
	r.busy[id] = true
	defer delete(r.busy, id)

	urn := c.GetSpec().GetUrn()
	out := id
	switch {
	case leafURN(urn) || urn == URNLengthPrefix:
		// Walkable as is.
	case structuralArity(urn) >= 0:
		comps := c.GetComponentCoderIds()
		if want := structuralArity(urn); len(comps) != want {
			return "", fmt.Errorf("coder %q (%s) has %d components, want %d", id, urn, len(comps), want)
		}
		newComps := make([]string, len(comps))
		changed := false
		for i, cid := range comps {
			nc, err := r.rewrite(cid)
			if err != nil {
				return "", fmt.Errorf("coder %q (%s) component %d: %w", id, urn, i, err)
			}
			newComps[i] = nc
			changed = changed || nc != cid
		}
		if changed {
			out = putPreferred(r.coders, id+"_lp", newCoder(urn, c.GetSpec().GetPayload(), newComps))
		}
	default:
		out = putPreferred(r.coders, id+"_lp", newCoder(URNLengthPrefix, nil, []string{id}))
	}
	r.done[id] = out
	return out, nil
}

// AddWindowedValue adds (or reuses) a windowed_value coder over elemID and
// windowID and returns its ID.
func AddWindowedValue(coders map[string]*pipepb.Coder, elemID, windowID string) string {
	return AddCoder(coders, URNWindowedValue, nil, elemID, windowID)
}

// AddCoder adds a coder with the given URN, payload and component IDs and
// returns its ID. If a structurally equal coder (same URN, payload and
// component IDs) is already present, the smallest such ID is returned
// instead. New IDs are "weir_<short urn>", with "_<n>" appended if taken.
func AddCoder(coders map[string]*pipepb.Coder, urn string, payload []byte, components ...string) string {
	want := newCoder(urn, payload, components)
	var ids []string
	for id, c := range coders {
		if sameCoder(c, want) {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		sort.Strings(ids)
		return ids[0]
	}
	return putPreferred(coders, "weir_"+shortURN(urn), want)
}

// putPreferred stores c under preferred, or under preferred+"_<n>" for the
// smallest n >= 2 that is free, reusing an ID that already holds an equal
// coder along the way.
func putPreferred(coders map[string]*pipepb.Coder, preferred string, c *pipepb.Coder) string {
	id := preferred
	for n := 2; ; n++ {
		old, ok := coders[id]
		if !ok {
			coders[id] = c
			return id
		}
		if sameCoder(old, c) {
			return id
		}
		id = preferred + "_" + strconv.Itoa(n)
	}
}

func newCoder(urn string, payload []byte, components []string) *pipepb.Coder {
	return &pipepb.Coder{
		Spec:              &pipepb.FunctionSpec{Urn: urn, Payload: slices.Clone(payload)},
		ComponentCoderIds: slices.Clone(components),
	}
}

// sameCoder reports whether two coders have the same URN, payload and
// component IDs.
func sameCoder(a, b *pipepb.Coder) bool {
	return a.GetSpec().GetUrn() == b.GetSpec().GetUrn() &&
		bytes.Equal(a.GetSpec().GetPayload(), b.GetSpec().GetPayload()) &&
		slices.Equal(a.GetComponentCoderIds(), b.GetComponentCoderIds())
}
