package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

// newInboxes makes n buffered inboxes.
func newInboxes(n int) []inbox {
	out := make([]inbox, n)
	for i := range out {
		out[i] = make(inbox, DefaultLimits.InboxSize)
	}
	return out
}

// oneOutputRouter is a router of subtask `subtask` with one output "pc"
// (windowed KV<string,string> in the global window) and one target.
func oneOutputRouter(t *testing.T, subtask, maxP int, part plan.Partition, ins []inbox) (*router, *output) {
	o := &output{pcoll: "pc", wv: kvWV(t, "gw"), rr: subtask,
		targets: []target{{port: 3, part: part, inboxes: ins}}}
	r := &router{sender: fmt.Sprintf("s/%d", subtask), subtask: subtask, maxP: maxP,
		outs: map[string]*output{"pc": o}, order: []*output{o}}
	return r, o
}

func TestRouterEmitPartitions(t *testing.T) {
	// 40 elements with keys k0..k19, each key twice, in one chunk.
	var elems [][]byte
	var keys []string
	for i := range 40 {
		k := fmt.Sprintf("k%d", i%20)
		keys = append(keys, k)
		elems = append(elems, kvElem(int64(i), k, fmt.Sprintf("v%d", i), wire.GlobalWindow()))
	}
	chunk := bytes.Join(elems, nil)

	hashTo := func(maxP, n int) func(i int) int {
		return func(i int) int {
			return state.SubtaskForKeyGroup(state.KeyGroup(str(keys[i]), maxP), n, maxP)
		}
	}
	tests := []struct {
		name    string
		part    plan.Partition
		subtask int
		n       int
		maxP    int
		// dest returns the consumer subtasks element i goes to.
		dest func(i int) []int
	}{
		{"forward/same index", plan.Forward, 1, 3, 128, func(int) []int { return []int{1} }},
		{"forward/index modulo consumers", plan.Forward, 5, 3, 128, func(int) []int { return []int{2} }},
		{"forward/one consumer", plan.Forward, 4, 1, 128, func(int) []int { return []int{0} }},
		{"hash/3 of 128", plan.Hash, 0, 3, 128, func(i int) []int { return []int{hashTo(128, 3)(i)} }},
		{"hash/4 of 7", plan.Hash, 2, 4, 7, func(i int) []int { return []int{hashTo(7, 4)(i)} }},
		{"hash/one consumer", plan.Hash, 2, 1, 128, func(int) []int { return []int{0} }},
		{"round robin/from own index", plan.RoundRobin, 1, 3, 128, func(i int) []int { return []int{(1 + i) % 3} }},
		{"round robin/4", plan.RoundRobin, 0, 4, 128, func(i int) []int { return []int{i % 4} }},
		{"broadcast", plan.Broadcast, 1, 3, 128, func(int) []int { return []int{0, 1, 2} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ins := newInboxes(tc.n)
			r, _ := oneOutputRouter(t, tc.subtask, tc.maxP, tc.part, ins)
			if err := r.emit(context.Background(), "pc", chunk); err != nil {
				t.Fatal(err)
			}
			want := make([][]byte, tc.n)
			for i, e := range elems {
				for _, d := range tc.dest(i) {
					want[d] = append(want[d], e...)
				}
			}
			for i, in := range ins {
				ms := drain(in)
				var got []byte
				for _, m := range ms {
					if m.kind != msgData || m.port != 3 || m.sender != r.sender {
						t.Errorf("consumer %d got %+v, want data on port 3 from %s", i, m, r.sender)
					}
					got = append(got, m.data...)
				}
				if len(want[i]) == 0 && len(ms) != 0 {
					t.Errorf("consumer %d got %d messages, want none", i, len(ms))
				}
				if len(ms) > 1 {
					t.Errorf("consumer %d got the chunk's elements in %d messages, want one", i, len(ms))
				}
				if !bytes.Equal(got, want[i]) {
					t.Errorf("consumer %d got %x\nwant %x", i, got, want[i])
				}
			}
		})
	}
}

func TestRouterHashSpreadsAndIsStable(t *testing.T) {
	// Keys spread over every consumer, and a key goes to the same consumer
	// in every chunk.
	const n, maxP = 4, 128
	ins := newInboxes(n)
	r, _ := oneOutputRouter(t, 0, maxP, plan.Hash, ins)
	owner := map[string]int{}
	for round := range 3 {
		var chunk []byte
		for i := range 50 {
			chunk = append(chunk, kvElem(0, fmt.Sprintf("key-%d", i), fmt.Sprint(round), wire.GlobalWindow())...)
		}
		if err := r.emit(context.Background(), "pc", chunk); err != nil {
			t.Fatal(err)
		}
		for i, in := range ins {
			for _, m := range drain(in) {
				err := kvWV(t, "gw").ForEach(m.data, func(e wire.Element) error {
					k, _ := readStr(t, e.Value)
					if o, ok := owner[k]; ok && o != i {
						return fmt.Errorf("key %s went to consumer %d, earlier to %d", k, i, o)
					}
					owner[k] = i
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	used := map[int]int{}
	for _, o := range owner {
		used[o]++
	}
	if len(owner) != 50 || len(used) != n {
		t.Errorf("50 keys went to %d consumers (%v), %d keys seen", len(used), used, len(owner))
	}
}

func TestRouterRoundRobinEven(t *testing.T) {
	// Across chunks of uneven sizes, counts per consumer never differ by
	// more than one, and the rotation continues where it stopped.
	const n = 3
	ins := newInboxes(n)
	r, _ := oneOutputRouter(t, 2, 128, plan.RoundRobin, ins)
	counts := make([]int, n)
	total := 0
	for _, size := range []int{1, 7, 2, 11, 5} {
		var chunk []byte
		for range size {
			chunk = append(chunk, kvElem(0, "same key", "v", wire.GlobalWindow())...)
		}
		if err := r.emit(context.Background(), "pc", chunk); err != nil {
			t.Fatal(err)
		}
		for i, in := range ins {
			for _, m := range drain(in) {
				_ = kvWV(t, "gw").ForEach(m.data, func(wire.Element) error { counts[i]++; return nil })
			}
		}
		total += size
		lo, hi := counts[0], counts[0]
		for _, c := range counts {
			lo, hi = min(lo, c), max(hi, c)
		}
		if hi-lo > 1 {
			t.Fatalf("after %d elements counts are %v", total, counts)
		}
	}
	// 26 elements from index 2: consumers 2, 0, 1, 2, ... → 2 gets 9, 0 gets 9, 1 gets 8.
	if want := []int{9, 8, 9}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
}

func TestRouterEmitIgnoresEmptyAndUnknown(t *testing.T) {
	ins := newInboxes(2)
	r, _ := oneOutputRouter(t, 0, 128, plan.Broadcast, ins)
	if err := r.emit(context.Background(), "pc", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.emit(context.Background(), "other", kvElem(0, "k", "v", wire.GlobalWindow())); err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		if ms := drain(in); len(ms) != 0 {
			t.Errorf("consumer %d got %d messages, want none", i, len(ms))
		}
	}
}

func TestRouterHashErrors(t *testing.T) {
	ins := newInboxes(2)
	r, _ := oneOutputRouter(t, 0, 128, plan.Hash, ins)
	// A value that is not a whole KV: the key is there, the value is not.
	bad := wire.AppendWindowedValue(nil, 0, [][]byte{wire.GlobalWindow()}, nil, str("only a key"))
	if err := r.emit(context.Background(), "pc", bad); err == nil {
		t.Error("emitting a non-KV on a hash edge: no error")
	}
	// Truncated element.
	good := kvElem(0, "k", "v", wire.GlobalWindow())
	if err := r.emit(context.Background(), "pc", good[:len(good)-1]); err == nil {
		t.Error("emitting a truncated element on a hash edge: no error")
	}
	// Nothing is sent when the chunk fails part way.
	if err := r.emit(context.Background(), "pc", append(append([]byte{}, good...), bad...)); err == nil {
		t.Error("emitting good then bad: no error")
	}
	for i, in := range ins {
		if ms := drain(in); len(ms) != 0 {
			t.Errorf("consumer %d got %d messages after errors, want none", i, len(ms))
		}
	}
}

func TestRouterEmitBlockedHonoursContext(t *testing.T) {
	full := make(inbox) // unbuffered, nobody reads: always full
	r, _ := oneOutputRouter(t, 0, 128, plan.Forward, []inbox{full})
	cause := errors.New("stage failed")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	if err := r.emit(ctx, "pc", kvElem(0, "k", "v", wire.GlobalWindow())); !errors.Is(err, cause) {
		t.Errorf("emit to a full inbox after cancel = %v, want %v", err, cause)
	}
	if err := r.control(ctx, msgEOI, 0); !errors.Is(err, cause) {
		t.Errorf("control to a full inbox after cancel = %v, want %v", err, cause)
	}
}

func TestRouterControl(t *testing.T) {
	// Stage X (3 subtasks) reads output a on port 0 and output b on port 1;
	// stage Y (2 subtasks) reads a on port 2 (broadcast); stage Z (1 subtask)
	// reads b; output c has no consumer.
	x, y, z := newInboxes(3), newInboxes(2), newInboxes(1)
	wv := kvWV(t, "gw")
	a := &output{pcoll: "a", wv: wv, targets: []target{
		{port: 0, part: plan.Hash, inboxes: x},
		{port: 2, part: plan.Broadcast, inboxes: y},
	}}
	b := &output{pcoll: "b", wv: wv, targets: []target{
		{port: 1, part: plan.Forward, inboxes: x},
		{port: 0, part: plan.RoundRobin, inboxes: z},
	}}
	c := &output{pcoll: "c", wv: wv}
	r := &router{sender: "up/1", subtask: 1, maxP: 128,
		outs: map[string]*output{"a": a, "b": b, "c": c}, order: []*output{a, b, c}}

	if err := r.control(context.Background(), msgWatermark, 1234); err != nil {
		t.Fatal(err)
	}
	if err := r.control(context.Background(), msgEOI, wire.MaxTimestamp); err != nil {
		t.Fatal(err)
	}
	type ev struct {
		kind msgKind
		port int
		wm   int64
	}
	check := func(name string, ins []inbox, want []ev) {
		t.Helper()
		for i, in := range ins {
			var got []ev
			for _, m := range drain(in) {
				if m.sender != "up/1" || m.data != nil {
					t.Errorf("%s[%d]: message %+v, want sender up/1 and no data", name, i, m)
				}
				got = append(got, ev{m.kind, m.port, m.wm})
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s[%d] got %v, want %v", name, i, got, want)
			}
		}
	}
	// One event per (output, target, consumer subtask), in order: all
	// watermarks before all EOIs, per output in declaration order.
	check("X", x, []ev{{msgWatermark, 0, 1234}, {msgWatermark, 1, 1234}, {msgEOI, 0, wire.MaxTimestamp}, {msgEOI, 1, wire.MaxTimestamp}})
	check("Y", y, []ev{{msgWatermark, 2, 1234}, {msgEOI, 2, wire.MaxTimestamp}})
	check("Z", z, []ev{{msgWatermark, 0, 1234}, {msgEOI, 0, wire.MaxTimestamp}})
}

func TestRouterControlFollowsData(t *testing.T) {
	// Control never overtakes data: an EOI sent after an emit is queued
	// after the data in every inbox.
	ins := newInboxes(3)
	r, _ := oneOutputRouter(t, 0, 128, plan.RoundRobin, ins)
	var chunk []byte
	for i := range 6 {
		chunk = append(chunk, kvElem(0, fmt.Sprint(i), "v", wire.GlobalWindow())...)
	}
	if err := r.emit(context.Background(), "pc", chunk); err != nil {
		t.Fatal(err)
	}
	if err := r.control(context.Background(), msgEOI, wire.MaxTimestamp); err != nil {
		t.Fatal(err)
	}
	for i, in := range ins {
		ms := drain(in)
		if len(ms) != 2 || ms[0].kind != msgData || ms[1].kind != msgEOI {
			t.Errorf("consumer %d got %+v, want data then EOI", i, ms)
		}
	}
}

func TestRouterEmitCutsBigOutput(t *testing.T) {
	// 3,000 elements of about 1 KiB: about 3 MiB in one chunk.
	var elems [][]byte
	for i := range 3000 {
		elems = append(elems, kvElem(int64(i), fmt.Sprintf("k%d", i), string(bytes.Repeat([]byte{'v'}, 1000)), wire.GlobalWindow()))
	}
	chunk := bytes.Join(elems, nil)
	for _, part := range []plan.Partition{plan.Forward, plan.Hash, plan.RoundRobin, plan.Broadcast} {
		t.Run(fmt.Sprint(part), func(t *testing.T) {
			ins := newInboxes(2)
			r, o := oneOutputRouter(t, 0, 128, part, ins)
			if err := r.emit(context.Background(), "pc", chunk); err != nil {
				t.Fatal(err)
			}
			var all int
			for i, in := range ins {
				for _, m := range drain(in) {
					if len(m.data) > DefaultLimits.MessageBytes {
						t.Errorf("consumer %d: a message of %d bytes, more than %d", i, len(m.data), DefaultLimits.MessageBytes)
					}
					n := 0
					if err := o.wv.ForEach(m.data, func(wire.Element) error { n++; return nil }); err != nil {
						t.Fatalf("consumer %d: a message cut inside an element: %v", i, err)
					}
					all += n
				}
			}
			want := len(elems)
			if part == plan.Broadcast {
				want *= 2
			}
			if all != want {
				t.Errorf("%d elements arrived, want %d", all, want)
			}
		})
	}
}
