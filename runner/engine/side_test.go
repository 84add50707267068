package engine

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/sdkharness"
)

func iterKey(transform, local string, window []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_IterableSideInput_{IterableSideInput: &fnpb.StateKey_IterableSideInput{
		TransformId: transform, SideInputId: local, Window: window}}}
}

func mmKey(transform, local string, window, key []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapSideInput_{MultimapSideInput: &fnpb.StateKey_MultimapSideInput{
		TransformId: transform, SideInputId: local, Window: window, Key: key}}}
}

func mmKeysKey(transform, local string, window []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapKeysSideInput_{MultimapKeysSideInput: &fnpb.StateKey_MultimapKeysSideInput{
		TransformId: transform, SideInputId: local, Window: window}}}
}

func getReq(key *fnpb.StateKey, token []byte) *fnpb.StateRequest {
	return &fnpb.StateRequest{StateKey: key, Request: &fnpb.StateRequest_Get{Get: &fnpb.StateGetRequest{ContinuationToken: token}}}
}

// stateHandler answers Fn State API requests (fnState).
type stateHandler interface {
	HandleState(*fnpb.StateRequest) *fnpb.StateResponse
}

// fnState is a bundle's state as its SDK's requests reach it: through
// sdkharness's translation of the Fn State API into calls on bundleState.
type fnState struct {
	*bundleState
	*sdkharness.StateServer
}

// newFnState serves h's state in pages of at most page bytes (0: the
// default).
func newFnState(h *bundleState, page int) *fnState {
	return &fnState{h, sdkharness.NewStateServer("bundle", h, page)}
}

// getAll reads a state key, following continuation tokens, and returns the
// concatenated data and the number of responses.
func getAll(t *testing.T, h stateHandler, key *fnpb.StateKey) ([]byte, int) {
	t.Helper()
	var out []byte
	var token []byte
	for n := 1; ; n++ {
		r := h.HandleState(getReq(key, token))
		if r.GetError() != "" {
			t.Fatalf("get %v: %s", key, r.GetError())
		}
		out = append(out, r.GetGet().GetData()...)
		token = r.GetGet().GetContinuationToken()
		if len(token) == 0 {
			return out, n
		}
		if n > 1000 {
			t.Fatal("continuation tokens never end")
		}
	}
}

// newTestSide makes a side input of windowed KV<string,string> in interval
// windows, "side0" of transform "pardo", in a new DB, fed by add.
func newTestSide(t *testing.T, multimap bool, chunks ...[]byte) (*sideInput, *fnState) {
	t.Helper()
	spec := plan.SideInput{Transform: "pardo", Local: "side0", PColl: "pc", Multimap: multimap}
	si := newSideInput(spec, kvWV(t, "iw"), 0, openDB(t))
	addChunks(t, si, chunks...)
	return si, newFnState(&bundleState{sideState: &sideState{inputs: map[[2]string]*sideInput{{"pardo", spec.Local}: si}}}, 0)
}

func addChunks(t *testing.T, si *sideInput, chunks ...[]byte) {
	t.Helper()
	for _, c := range chunks {
		if err := si.add(c); err != nil {
			t.Fatal(err)
		}
	}
}

// newTestSides makes two side inputs in one DB, both fed the same chunks:
// "side0" a multimap, "side1" an iterable.
func newTestSides(t *testing.T, chunks ...[]byte) *fnState {
	t.Helper()
	mm, h := newTestSide(t, true, chunks...)
	it := newSideInput(plan.SideInput{Transform: "pardo", Local: "side1", PColl: "pc"}, kvWV(t, "iw"), 1, mm.db)
	addChunks(t, it, chunks...)
	h.inputs[[2]string{"pardo", "side1"}] = it
	return h
}

func TestSideInputLookups(t *testing.T) {
	w0, w1, w2 := iwin(0, 10), iwin(10, 20), iwin(20, 30)
	// Arrival: b, a, b (again), c in w0 over two chunks; a in w1; x in both
	// w0 and w1 through one element.
	h := newTestSides(t,
		bytes.Join([][]byte{
			kvElem(1, "b", "b1", w0),
			kvElem(2, "a", "a1", w0),
			kvElem(3, "b", "b2", w0),
		}, nil),
		bytes.Join([][]byte{
			kvElem(11, "a", "a-w1", w1),
			kvElem(4, "c", "c1", w0),
			kvElem(5, "x", "x", w0, w1),
			kvElem(6, "b", "b3", w0),
		}, nil),
	)
	strs := func(b []byte) string { return strings.Join(readStrs(t, b), " ") }
	tests := []struct {
		name string
		key  *fnpb.StateKey
		want string // decoded strings, space separated
	}{
		{"iterable w0: every KV in arrival order", iterKey("pardo", "side1", w0), "b b1 a a1 b b2 c c1 x x b b3"},
		{"iterable w1", iterKey("pardo", "side1", w1), "a a-w1 x x"},
		{"iterable empty window", iterKey("pardo", "side1", w2), ""},
		{"multimap w0 b: values of one key", mmKey("pardo", "side0", w0, str("b")), "b1 b2 b3"},
		{"multimap w0 a", mmKey("pardo", "side0", w0, str("a")), "a1"},
		{"multimap w1 a: per window", mmKey("pardo", "side0", w1, str("a")), "a-w1"},
		{"multimap w1 b: absent key", mmKey("pardo", "side0", w1, str("b")), ""},
		{"multimap w2: absent window", mmKey("pardo", "side0", w2, str("a")), ""},
		{"keys w0: key order, no duplicates", mmKeysKey("pardo", "side0", w0), "a b c x"},
		{"keys w1", mmKeysKey("pardo", "side0", w1), "a x"},
		{"keys w2", mmKeysKey("pardo", "side0", w2), ""},
		{"side inputs do not see each other: no values under the multimap", iterKey("pardo", "side0", w0), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data, n := getAll(t, h, tc.key)
			if n != 1 {
				t.Errorf("small value came in %d responses", n)
			}
			if got := strs(data); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSideInputIterableNotMultimap(t *testing.T) {
	// An iterable side input does not index keys, and its values need not
	// be KVs.
	coders := testCoders()
	wv := mustWV(t, coders, wire.AddWindowedValue(coders, "str", "gw"))
	si := newSideInput(plan.SideInput{Transform: "t", Local: "s"}, wv, 0, openDB(t))
	gw := wire.GlobalWindow()
	if err := si.add(append(wire.AppendWindowedValue(nil, 0, [][]byte{gw}, nil, str("one")),
		wire.AppendWindowedValue(nil, 0, [][]byte{gw}, nil, str("two"))...)); err != nil {
		t.Fatal(err)
	}
	h := newFnState(&bundleState{sideState: &sideState{inputs: map[[2]string]*sideInput{{"t", "s"}: si}}}, 0)
	data, _ := getAll(t, h, iterKey("t", "s", gw))
	if got := readStrs(t, data); !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("iterable = %q", got)
	}
	if keys, _ := getAll(t, h, mmKeysKey("t", "s", gw)); len(keys) != 0 {
		t.Errorf("iterable side input indexed keys: %x", keys)
	}
}

func TestSideInputAddErrors(t *testing.T) {
	si, _ := newTestSide(t, true)
	// A multimap side input needs KV values.
	bad := wire.AppendWindowedValue(nil, 0, [][]byte{iwin(0, 1)}, nil, str("not a kv"))
	if err := si.add(bad); err == nil {
		t.Error("adding a non-KV to a multimap side input: no error")
	}
	good := kvElem(0, "k", "v", iwin(0, 1))
	if err := si.add(good[:len(good)-2]); err == nil {
		t.Error("adding a truncated element: no error")
	}
}

func TestSideStateErrors(t *testing.T) {
	_, h := newTestSide(t, true, kvElem(0, "k", "v", iwin(0, 10)))
	w := iwin(0, 10)
	for _, tc := range []struct {
		name string
		req  *fnpb.StateRequest
	}{
		{"unknown transform", getReq(iterKey("other", "side0", w), nil)},
		{"unknown side input", getReq(iterKey("pardo", "side1", w), nil)},
		{"unknown multimap", getReq(mmKey("pardo", "nope", w, str("k")), nil)},
		{"unknown multimap keys", getReq(mmKeysKey("x", "side0", w), nil)},
		{"user state key", getReq(&fnpb.StateKey{Type: &fnpb.StateKey_BagUserState_{BagUserState: &fnpb.StateKey_BagUserState{}}}, nil)},
		{"no key", getReq(nil, nil)},
		{"append", &fnpb.StateRequest{StateKey: iterKey("pardo", "side0", w),
			Request: &fnpb.StateRequest_Append{Append: &fnpb.StateAppendRequest{Data: []byte("x")}}}},
		{"clear", &fnpb.StateRequest{StateKey: iterKey("pardo", "side0", w),
			Request: &fnpb.StateRequest_Clear{Clear: &fnpb.StateClearRequest{}}}},
		{"bad token", getReq(iterKey("pardo", "side0", w), []byte("abc"))},
		{"negative token", getReq(iterKey("pardo", "side0", w), []byte("-1"))},
		{"token past the end", getReq(iterKey("pardo", "side0", w), []byte("999"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.HandleState(tc.req)
			if r.GetError() == "" {
				t.Errorf("no error; response %v", r)
			}
			if r.GetResponse() != nil {
				t.Errorf("error response also carries %T", r.GetResponse())
			}
		})
	}
}

func TestSideInputContinuation(t *testing.T) {
	// ~5 MiB of values in one window comes back in pieces of at most
	// DefaultLimits.StateChunkBytes bytes whose concatenation is the whole.
	w := iwin(0, 100)
	val := strings.Repeat("v", 999)
	var chunks [][]byte
	var want []byte
	var wantKey []byte
	for c := range 10 {
		var chunk []byte
		for i := range 500 {
			k := "hot"
			if i%2 == 1 {
				k = fmt.Sprintf("k%d-%d", c, i)
			}
			v := fmt.Sprintf("%d/%d:%s", c, i, val)
			chunk = append(chunk, kvElem(int64(i), k, v, w)...)
			want = append(want, kvBytes(k, v)...)
			if k == "hot" {
				wantKey = append(wantKey, str(v)...)
			}
		}
		chunks = append(chunks, chunk)
	}
	h := newTestSides(t, chunks...)
	if len(want) <= 2*DefaultLimits.StateChunkBytes {
		t.Fatalf("test data of %d bytes does not need three pieces", len(want))
	}
	for _, tc := range []struct {
		name string
		key  *fnpb.StateKey
		want []byte
	}{
		{"iterable", iterKey("pardo", "side1", w), want},
		{"multimap", mmKey("pardo", "side0", w, str("hot")), wantKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, peeked []byte
			var token []byte
			pieces := 0
			for {
				r := h.HandleState(getReq(tc.key, token))
				if r.GetError() != "" {
					t.Fatal(r.GetError())
				}
				d := r.GetGet().GetData()
				if len(d) > DefaultLimits.StateChunkBytes {
					t.Fatalf("piece of %d bytes, more than %d", len(d), DefaultLimits.StateChunkBytes)
				}
				if peeked != nil && !bytes.Equal(d, peeked) {
					t.Errorf("piece %d differs from an earlier read with the same token", pieces)
				}
				got = append(got, d...)
				pieces++
				token = r.GetGet().GetContinuationToken()
				if len(token) == 0 {
					break
				}
				// Reads are idempotent: the SDK may ask with a token twice.
				peek := h.HandleState(getReq(tc.key, token))
				if peek.GetError() != "" {
					t.Fatal(peek.GetError())
				}
				peeked = bytes.Clone(peek.GetGet().GetData())
				if pieces > 100 {
					t.Fatal("continuation never ends")
				}
			}
			wantPieces := (len(tc.want) + DefaultLimits.StateChunkBytes - 1) / DefaultLimits.StateChunkBytes
			if pieces != wantPieces {
				t.Errorf("%d bytes came in %d pieces, want %d", len(tc.want), pieces, wantPieces)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("concatenated pieces (%d bytes) differ from the whole (%d bytes)", len(got), len(tc.want))
			}
		})
	}
}
