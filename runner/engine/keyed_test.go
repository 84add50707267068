package engine

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/state"
)

func openDB(t testing.TB) *state.DB {
	t.Helper()
	db, err := state.Open(state.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// cellRef names a user state cell in requests.
type cellRef struct {
	transform, id string
	window, key   []byte
}

var defaultCell = cellRef{"pardo", "st", iwin(0, 10), str("user-key")}

func (c cellRef) bag() *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_BagUserState_{BagUserState: &fnpb.StateKey_BagUserState{
		TransformId: c.transform, UserStateId: c.id, Window: c.window, Key: c.key}}}
}

func (c cellRef) mm(mapKey []byte) *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapUserState_{MultimapUserState: &fnpb.StateKey_MultimapUserState{
		TransformId: c.transform, UserStateId: c.id, Window: c.window, Key: c.key, MapKey: mapKey}}}
}

func (c cellRef) keys() *fnpb.StateKey {
	return &fnpb.StateKey{Type: &fnpb.StateKey_MultimapKeysUserState_{MultimapKeysUserState: &fnpb.StateKey_MultimapKeysUserState{
		TransformId: c.transform, UserStateId: c.id, Window: c.window, Key: c.key}}}
}

// ordered names the cell as ordered list state, with range r ([start, end)) if not nil.
func (c cellRef) ordered(r []int64) *fnpb.StateKey {
	u := &fnpb.StateKey_OrderedListUserState{TransformId: c.transform, UserStateId: c.id, Window: c.window, Key: c.key}
	if r != nil {
		u.Range = &fnpb.OrderedListRange{Start: r[0], End: r[1]}
	}
	return &fnpb.StateKey{Type: &fnpb.StateKey_OrderedListUserState_{OrderedListUserState: u}}
}

// orderedEntry encodes an ordered list entry as the Go SDK does:
// varint(uint64(sortKey)) then the value (a string here).
func orderedEntry(sortKey int64, v string) []byte {
	return append(wire.AppendVarint(nil, uint64(sortKey)), str(v)...)
}

// readOrdered decodes ordered list entries as "sortKey:value".
func readOrdered(t *testing.T, b []byte) []string {
	t.Helper()
	out := []string{}
	for len(b) > 0 {
		sk, n, err := wire.ReadVarint(b)
		if err != nil {
			t.Fatalf("reading sort key: %v", err)
		}
		var v string
		v, b = readStr(t, b[n:])
		out = append(out, fmt.Sprintf("%d:%s", int64(sk), v))
	}
	return out
}

func appendReq(key *fnpb.StateKey, data []byte) *fnpb.StateRequest {
	return &fnpb.StateRequest{StateKey: key, Request: &fnpb.StateRequest_Append{Append: &fnpb.StateAppendRequest{Data: data}}}
}

func clearReq(key *fnpb.StateKey) *fnpb.StateRequest {
	return &fnpb.StateRequest{StateKey: key, Request: &fnpb.StateRequest_Clear{Clear: &fnpb.StateClearRequest{}}}
}

// must sends req and fails on an error response.
func must(t *testing.T, h stateHandler, req *fnpb.StateRequest) *fnpb.StateResponse {
	t.Helper()
	r := h.HandleState(req)
	if r.GetError() != "" {
		t.Fatalf("%v: %s", req, r.GetError())
	}
	return r
}

// appendStrs appends the encoded strings to a state key.
func appendStrs(t *testing.T, h stateHandler, key *fnpb.StateKey, vals ...string) {
	t.Helper()
	var data []byte
	for _, v := range vals {
		data = append(data, str(v)...)
	}
	r := must(t, h, appendReq(key, data))
	if r.GetAppend() == nil {
		t.Fatalf("append response is %T", r.GetResponse())
	}
}

func clearKey(t *testing.T, h stateHandler, key *fnpb.StateKey) {
	t.Helper()
	if r := must(t, h, clearReq(key)); r.GetClear() == nil {
		t.Fatalf("clear response is %T", r.GetResponse())
	}
}

// getStrs reads a state key (following continuation tokens) as strings.
func getStrs(t *testing.T, h stateHandler, key *fnpb.StateKey) []string {
	t.Helper()
	data, _ := getAll(t, h, key)
	return readStrs(t, data)
}

// getKeys reads multimap keys, sorted: Beam promises no order.
func getKeys(t *testing.T, h stateHandler, c cellRef) []string {
	t.Helper()
	ks := getStrs(t, h, c.keys())
	sort.Strings(ks)
	return ks
}

func checkStrs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func newBundleState(db *state.DB) *fnState {
	return newFnState(&bundleState{b: db.NewBundle(), maxP: testMaxP}, 0)
}

func TestBagState(t *testing.T) {
	db := openDB(t)
	h := newBundleState(db)
	defer h.b.Discard()
	c := defaultCell
	checkStrs(t, "empty bag", getStrs(t, h, c.bag()))
	appendStrs(t, h, c.bag(), "a", "b")
	appendStrs(t, h, c.bag(), "c")
	checkStrs(t, "bag after appends", getStrs(t, h, c.bag()), "a", "b", "c")

	// Cells differing in any coordinate are separate.
	others := []cellRef{
		{"pardo2", c.id, c.window, c.key},
		{c.transform, "st2", c.window, c.key},
		{c.transform, c.id, iwin(10, 20), c.key},
		{c.transform, c.id, c.window, str("user-key2")},
		{c.transform, c.id, c.window, str("user-ke")},
	}
	for i, o := range others {
		checkStrs(t, "other cell", getStrs(t, h, o.bag()))
		appendStrs(t, h, o.bag(), strings.Repeat("o", i+1))
	}
	checkStrs(t, "bag beside others", getStrs(t, h, c.bag()), "a", "b", "c")

	clearKey(t, h, c.bag())
	checkStrs(t, "cleared bag", getStrs(t, h, c.bag()))
	appendStrs(t, h, c.bag(), "after clear")
	checkStrs(t, "bag appended after clear", getStrs(t, h, c.bag()), "after clear")
	for i, o := range others {
		checkStrs(t, "other cell after clear", getStrs(t, h, o.bag()), strings.Repeat("o", i+1))
	}
}

func TestMultimapState(t *testing.T) {
	db := openDB(t)
	h := newBundleState(db)
	defer h.b.Discard()
	c := defaultCell
	checkStrs(t, "empty keys", getKeys(t, h, c))
	appendStrs(t, h, c.mm(str("k1")), "v1")
	appendStrs(t, h, c.mm(str("k2")), "v2")
	appendStrs(t, h, c.mm(str("k1")), "v3", "v4")
	appendStrs(t, h, c.mm(str("k")), "prefix key")
	appendStrs(t, h, c.mm([]byte{0, 1, 0}), "binary") // zero bytes in a map key
	checkStrs(t, "k1", getStrs(t, h, c.mm(str("k1"))), "v1", "v3", "v4")
	checkStrs(t, "k2", getStrs(t, h, c.mm(str("k2"))), "v2")
	checkStrs(t, "k", getStrs(t, h, c.mm(str("k"))), "prefix key")
	checkStrs(t, "absent", getStrs(t, h, c.mm(str("k3"))))
	data, _ := getAll(t, h, c.mm([]byte{0, 1, 0}))
	if !bytes.Equal(data, str("binary")) {
		t.Errorf("binary map key reads %x", data)
	}

	// Keys: each once. The binary key is not a string: read raw.
	raw, _ := getAll(t, h, c.keys())
	wantRaw := [][]byte{{0, 1, 0}, str("k"), str("k1"), str("k2")}
	if !bytes.Equal(raw, bytes.Join(wantRaw, nil)) {
		t.Errorf("keys = %x, want %x", raw, bytes.Join(wantRaw, nil))
	}
	clearKey(t, h, c.mm([]byte{0, 1, 0}))

	// A bag of the same cell is separate from the multimap.
	appendStrs(t, h, c.bag(), "bag")
	checkStrs(t, "keys beside a bag", getKeys(t, h, c), "k", "k1", "k2")

	clearKey(t, h, c.mm(str("k1")))
	checkStrs(t, "cleared key", getStrs(t, h, c.mm(str("k1"))))
	checkStrs(t, "keys after clearing k1", getKeys(t, h, c), "k", "k2")
	checkStrs(t, "k2 after clearing k1", getStrs(t, h, c.mm(str("k2"))), "v2")
	appendStrs(t, h, c.mm(str("k1")), "back")
	checkStrs(t, "k1 again", getStrs(t, h, c.mm(str("k1"))), "back")
	checkStrs(t, "keys with k1 again", getKeys(t, h, c), "k", "k1", "k2")

	// Clearing the keys clears the whole map, not the bag, not other cells.
	other := cellRef{c.transform, c.id, c.window, str("other user key")}
	appendStrs(t, h, other.mm(str("k1")), "other")
	clearKey(t, h, c.keys())
	checkStrs(t, "keys after clear all", getKeys(t, h, c))
	checkStrs(t, "k2 after clear all", getStrs(t, h, c.mm(str("k2"))))
	checkStrs(t, "bag after clear all", getStrs(t, h, c.bag()), "bag")
	checkStrs(t, "other cell after clear all", getStrs(t, h, other.mm(str("k1"))), "other")

	// Appending to the keys is not allowed.
	if r := h.HandleState(appendReq(c.keys(), str("x"))); r.GetError() == "" {
		t.Error("append to multimap keys: no error")
	}
}

func TestBundleStateCommitAndDiscard(t *testing.T) {
	db := openDB(t)
	c := defaultCell

	// A discarded bundle leaves nothing.
	h := newBundleState(db)
	appendStrs(t, h, c.bag(), "lost")
	appendStrs(t, h, c.mm(str("k")), "lost")
	checkStrs(t, "own write", getStrs(t, h, c.bag()), "lost")
	h.b.Discard()

	h = newBundleState(db)
	checkStrs(t, "bag after discard", getStrs(t, h, c.bag()))
	checkStrs(t, "keys after discard", getKeys(t, h, c))
	appendStrs(t, h, c.bag(), "kept1", "kept2")
	appendStrs(t, h, c.mm(str("k")), "kept")
	if err := h.b.Commit(); err != nil {
		t.Fatal(err)
	}

	// A committed bundle is visible to the next one.
	h = newBundleState(db)
	checkStrs(t, "bag after commit", getStrs(t, h, c.bag()), "kept1", "kept2")
	checkStrs(t, "map after commit", getStrs(t, h, c.mm(str("k"))), "kept")
	// A retry that clears and appends, then fails, changes nothing.
	clearKey(t, h, c.bag())
	clearKey(t, h, c.keys())
	appendStrs(t, h, c.bag(), "retry")
	checkStrs(t, "bag in failing bundle", getStrs(t, h, c.bag()), "retry")
	h.b.Discard()

	h = newBundleState(db)
	checkStrs(t, "bag after failed retry", getStrs(t, h, c.bag()), "kept1", "kept2")
	checkStrs(t, "keys after failed retry", getKeys(t, h, c), "k")
	// Appends across bundles keep their order.
	appendStrs(t, h, c.bag(), "kept3")
	if err := h.b.Commit(); err != nil {
		t.Fatal(err)
	}
	h = newBundleState(db)
	defer h.b.Discard()
	checkStrs(t, "bag over two commits", getStrs(t, h, c.bag()), "kept1", "kept2", "kept3")
}

func TestBundleStateUsesKeyGroup(t *testing.T) {
	// The cell is stored under the key group of its encoded key, so a
	// restore or rescale by key-group range finds it.
	db := openDB(t)
	h := newBundleState(db)
	c := defaultCell
	appendStrs(t, h, c.bag(), "x")
	if err := h.b.Commit(); err != nil {
		t.Fatal(err)
	}
	b := db.NewBundle()
	defer b.Discard()
	kg := state.KeyGroup(c.key, testMaxP)
	for _, tc := range []struct {
		kg   int
		want []byte
	}{{kg, str("x")}, {(kg + 1) % testMaxP, nil}} {
		got, err := b.ReadBag(state.Cell{KeyGroup: tc.kg, Transform: c.transform, StateID: c.id, Window: c.window, Key: c.key})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("key group %d holds %x, want %x", tc.kg, got, tc.want)
		}
	}
}

func TestBundleStateLargeBag(t *testing.T) {
	db := openDB(t)
	h := newBundleState(db)
	defer h.b.Discard()
	var want []string
	for i := range 300 {
		v := strings.Repeat(string(rune('a'+i%26)), 20000)
		want = append(want, v)
		appendStrs(t, h, defaultCell.bag(), v)
	}
	data, pieces := getAll(t, h, defaultCell.bag())
	if pieces < 3 {
		t.Errorf("%d bytes came in %d pieces, want several of at most %d", len(data), pieces, DefaultLimits.StateChunkBytes)
	}
	checkStrs(t, "large bag", readStrs(t, data), want...)
}

func TestBundleStateRouting(t *testing.T) {
	// Side input keys go to the side inputs; user state needs a bundle.
	_, side := newTestSide(t, false, kvElem(0, "k", "v", iwin(0, 10)))
	h := newFnState(&bundleState{sideState: side.sideState, maxP: testMaxP}, 0)
	if got := getStrs(t, h, iterKey("pardo", "side0", iwin(0, 10))); !slices.Equal(got, []string{"k", "v"}) {
		t.Errorf("side input through bundleState = %q", got)
	}
	for _, req := range []*fnpb.StateRequest{
		getReq(defaultCell.bag(), nil),
		appendReq(defaultCell.mm(str("k")), str("v")),
		clearReq(defaultCell.keys()),
		appendReq(defaultCell.ordered(nil), orderedEntry(1, "v")),
	} {
		if r := h.HandleState(req); r.GetError() == "" {
			t.Errorf("user state request %v without a bundle: no error", req.GetStateKey())
		}
	}
	noSide := newBundleState(openDB(t))
	defer noSide.b.Discard()
	if r := noSide.HandleState(getReq(iterKey("pardo", "side0", iwin(0, 10)), nil)); r.GetError() == "" {
		t.Error("side input request without side inputs: no error")
	}
	if r := noSide.HandleState(&fnpb.StateRequest{StateKey: defaultCell.bag()}); r.GetError() == "" {
		t.Error("request without a body: no error")
	}
	if r := noSide.HandleState(getReq(defaultCell.bag(), []byte("bogus"))); r.GetError() == "" {
		t.Error("bad continuation token: no error")
	}
}

func TestOrderedListState(t *testing.T) {
	h := newBundleState(openDB(t))
	defer h.b.Discard()
	all := defaultCell.ordered([]int64{math.MinInt64, math.MaxInt64})
	for _, e := range []struct {
		sk int64
		v  string
	}{{300, "c"}, {100, "a"}, {-5, "neg"}, {100, "a2"}, {200, "b"}} {
		must(t, h, appendReq(defaultCell.ordered(nil), orderedEntry(e.sk, e.v)))
	}
	get := func(key *fnpb.StateKey) []string {
		t.Helper()
		data, _ := getAll(t, h, key)
		return readOrdered(t, data)
	}
	checkStrs(t, "full range", get(all), "-5:neg", "100:a", "100:a2", "200:b", "300:c")
	checkStrs(t, "no range", get(defaultCell.ordered(nil)), "-5:neg", "100:a", "100:a2", "200:b", "300:c")
	checkStrs(t, "[100, 300)", get(defaultCell.ordered([]int64{100, 300})), "100:a", "100:a2", "200:b")
	checkStrs(t, "other cell", get(cellRef{"pardo", "other", iwin(0, 10), str("user-key")}.ordered(nil)))

	must(t, h, clearReq(defaultCell.ordered([]int64{0, 201})))
	checkStrs(t, "after clearing [0, 201)", get(all), "-5:neg", "300:c")
	must(t, h, clearReq(defaultCell.ordered(nil)))
	checkStrs(t, "after clearing everything", get(all))

	if r := h.HandleState(appendReq(defaultCell.ordered(nil), []byte{0x80})); !strings.Contains(r.GetError(), "sort key") {
		t.Errorf("malformed entry: error %q", r.GetError())
	}
}

// TestFirable: for a transform with two timer families in one domain (on
// the Go SDK), a timer bundle holds, per key and window, only the family
// of its earliest due timer; other transforms get every due timer.
func TestFirable(t *testing.T) {
	fams := []plan.TimerFamily{
		{Transform: "two", Family: "end", Domain: pipepb.TimeDomain_EVENT_TIME},
		{Transform: "two", Family: "tag", Domain: pipepb.TimeDomain_EVENT_TIME},
		{Transform: "one", Family: "ev", Domain: pipepb.TimeDomain_EVENT_TIME},
		{Transform: "one", Family: "proc", Domain: pipepb.TimeDomain_PROCESSING_TIME},
	}
	k := &keyed{oneFamily: sharedDomains(fams)}
	if want := map[string]bool{"two": true}; !reflect.DeepEqual(k.oneFamily, want) {
		t.Fatalf("sharedDomains = %v, want %v", k.oneFamily, want)
	}
	tm := func(tr, fam, key, win, tag string) state.Timer {
		return state.Timer{TimerID: state.TimerID{Transform: tr, Family: fam, Key: []byte(key), Window: []byte(win), Tag: []byte(tag)}}
	}
	due := []state.Timer{
		tm("two", "tag", "k1", "w", "a"), tm("two", "end", "k1", "w", ""), tm("two", "tag", "k1", "w", "b"),
		tm("two", "end", "k2", "w", ""), tm("two", "tag", "k2", "w", "a"),
		tm("two", "tag", "k1", "v", "a"),
		tm("one", "ev", "k1", "w", "a"), tm("one", "ev", "k1", "w", "b"), tm("one", "proc", "k1", "w", ""),
	}
	var got []string
	for _, x := range k.firable(due) {
		got = append(got, x.Transform+"/"+x.Family+"/"+string(x.Key)+"/"+string(x.Window)+"/"+string(x.Tag))
	}
	want := []string{"two/tag/k1/w/a", "two/tag/k1/w/b", "two/end/k2/w/", "two/tag/k1/v/a", "one/ev/k1/w/a", "one/ev/k1/w/b", "one/proc/k1/w/"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("firable =\n%v\nwant\n%v", got, want)
	}
	if got := (&keyed{}).firable(due); len(got) != len(due) {
		t.Errorf("without oneFamily firable kept %d of %d", len(got), len(due))
	}
}

// TestPagedBagRead: the pages of a bag read after the first come from
// that first read (a bag in n pages is read once), and a write through
// the handler between pages makes the next page read the bag again.
func TestPagedBagRead(t *testing.T) {
	db := openDB(t)
	h := newFnState(&bundleState{b: db.NewBundle(), maxP: testMaxP}, 8)
	defer h.b.Discard()
	var vals []string
	for i := range 20 {
		vals = append(vals, fmt.Sprintf("v%02d", i))
	}
	appendStrs(t, h, defaultCell.bag(), vals...)
	c := state.Cell{Transform: defaultCell.transform, StateID: defaultCell.id, Window: defaultCell.window, Key: defaultCell.key}
	c.KeyGroup = state.KeyGroup(c.Key, testMaxP)

	// pages reads the bag from its second page on, after first.
	pages := func(first *fnpb.StateResponse) []string {
		data := first.GetGet().GetData()
		for token := first.GetGet().GetContinuationToken(); len(token) > 0; {
			r := must(t, h, getReq(defaultCell.bag(), token))
			data = append(data, r.GetGet().GetData()...)
			token = r.GetGet().GetContinuationToken()
		}
		return readStrs(t, data)
	}

	first := must(t, h, getReq(defaultCell.bag(), nil))
	if len(first.GetGet().GetContinuationToken()) == 0 {
		t.Fatal("a 100-byte bag fit one 8-byte page")
	}
	// Written behind the handler's back: not in the pages of this read.
	if err := h.b.AppendBag(c, str("behind")); err != nil {
		t.Fatal(err)
	}
	checkStrs(t, "pages of one read", pages(first), vals...)

	first = must(t, h, getReq(defaultCell.bag(), nil))
	appendStrs(t, h, defaultCell.bag(), "after") // drops the paged read
	checkStrs(t, "pages after a write", pages(first), append(append([]string(nil), vals...), "behind", "after")...)
}
