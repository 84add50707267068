package sdkharness

import (
	"fmt"
	"math"
	"strconv"
	"sync"

	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
	"google.golang.org/protobuf/proto"
)

// StateServer translates one bundle's Fn State API requests into calls on
// the engine's harness.State, one at a time, and none once the bundle has
// ended (its caller has then committed or discarded its state). Both kinds
// of worker use it: over the Fn API for every request, in process for all
// but bag state, which the Go SDK's calls reach directly.
type StateServer struct {
	inst string
	st   harness.State
	page int

	mu    sync.Mutex
	ended bool
	// paged is the last user state read answered in more than one page:
	// its later pages come from it, so a bag read in n pages costs one
	// read, not n. Any write drops it (a later page then reads again).
	paged *pagedRead
}

// pagedRead is a user state read whose pages are being fetched.
type pagedRead struct {
	key  string // the request's state key, marshalled
	data []byte
}

// NewStateServer returns the translation of bundle inst's requests into
// calls on st, answering reads in pages of at most pageBytes (0:
// harness.DefaultPageBytes).
func NewStateServer(inst string, st harness.State, pageBytes int) *StateServer {
	if pageBytes <= 0 {
		pageBytes = harness.DefaultPageBytes
	}
	return &StateServer{inst: inst, st: st, page: pageBytes}
}

// end refuses every later request.
func (s *StateServer) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}

// do runs op unless the bundle has ended or has no state, naming the
// bundle in its error.
func (s *StateServer) do(op func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return fmt.Errorf("state request for ended bundle %q", s.inst)
	}
	if s.st == nil {
		return fmt.Errorf("bundle %q has no state", s.inst)
	}
	return op()
}

// HandleState answers one request.
func (s *StateServer) HandleState(req *fnpb.StateRequest) *fnpb.StateResponse {
	var resp *fnpb.StateResponse
	if err := s.do(func() (err error) { resp, err = s.handleLocked(req); return err }); err != nil {
		return &fnpb.StateResponse{Error: err.Error()}
	}
	return resp
}

// userKey is the parsed state key of a user state request.
type userKey struct {
	kind       string // bag, map, keys, ordered
	cell       harness.Cell
	mapKey     []byte
	start, end int64 // ordered list range
}

func parseUserKey(k *fnpb.StateKey) (userKey, bool) {
	u := userKey{start: math.MinInt64, end: math.MaxInt64}
	switch t := k.GetType().(type) {
	case *fnpb.StateKey_BagUserState_:
		r := t.BagUserState
		u.kind, u.cell = "bag", harness.Cell{Transform: r.GetTransformId(), StateID: r.GetUserStateId(), Window: r.GetWindow(), Key: r.GetKey()}
	case *fnpb.StateKey_MultimapUserState_:
		r := t.MultimapUserState
		u.kind, u.cell = "map", harness.Cell{Transform: r.GetTransformId(), StateID: r.GetUserStateId(), Window: r.GetWindow(), Key: r.GetKey()}
		u.mapKey = r.GetMapKey()
	case *fnpb.StateKey_MultimapKeysUserState_:
		r := t.MultimapKeysUserState
		u.kind, u.cell = "keys", harness.Cell{Transform: r.GetTransformId(), StateID: r.GetUserStateId(), Window: r.GetWindow(), Key: r.GetKey()}
	case *fnpb.StateKey_OrderedListUserState_:
		r := t.OrderedListUserState
		u.kind, u.cell = "ordered", harness.Cell{Transform: r.GetTransformId(), StateID: r.GetUserStateId(), Window: r.GetWindow(), Key: r.GetKey()}
		if rg := r.GetRange(); rg != nil {
			u.start, u.end = rg.GetStart(), rg.GetEnd()
		}
	default:
		return u, false
	}
	return u, true
}

func (s *StateServer) handleLocked(req *fnpb.StateRequest) (*fnpb.StateResponse, error) {
	u, ok := parseUserKey(req.GetStateKey())
	if !ok {
		return s.side(req)
	}
	resp, err := s.user(req, u)
	if err != nil {
		return nil, fmt.Errorf("state %s of %s: %w", u.cell.StateID, u.cell.Transform, err)
	}
	return resp, nil
}

// user answers a user state request.
func (s *StateServer) user(req *fnpb.StateRequest, u userKey) (*fnpb.StateResponse, error) {
	st, c := s.st, u.cell
	var err error
	switch r := req.GetRequest().(type) {
	case *fnpb.StateRequest_Get:
		token := r.Get.GetContinuationToken()
		id, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req.GetStateKey())
		if p := s.paged; len(token) > 0 && p != nil && p.key == string(id) {
			return page(p.data, token, s.page)
		}
		var data []byte
		switch u.kind {
		case "bag":
			data, err = st.ReadBag(c)
		case "map":
			data, err = st.ReadMap(c, u.mapKey)
		case "keys":
			data, err = st.MapKeys(c)
		case "ordered":
			data, err = st.ReadOrdered(c, u.start, u.end)
		}
		if err != nil {
			return nil, err
		}
		s.paged = nil
		if len(data) > s.page {
			s.paged = &pagedRead{key: string(id), data: data}
		}
		return page(data, token, s.page)
	case *fnpb.StateRequest_Append:
		s.paged = nil
		data := r.Append.GetData()
		switch u.kind {
		case "bag":
			err = st.AppendBag(c, data)
		case "map":
			err = st.AppendMap(c, u.mapKey, data)
		case "ordered":
			err = st.AppendOrdered(c, data)
		default:
			err = fmt.Errorf("append to multimap keys is not allowed")
		}
		return &fnpb.StateResponse{Response: &fnpb.StateResponse_Append{Append: &fnpb.StateAppendResponse{}}}, err
	case *fnpb.StateRequest_Clear:
		s.paged = nil
		switch u.kind {
		case "bag":
			err = st.ClearBag(c)
		case "map":
			err = st.ClearMapKey(c, u.mapKey)
		case "keys":
			err = st.ClearMap(c)
		case "ordered":
			err = st.ClearOrdered(c, u.start, u.end)
		}
		return &fnpb.StateResponse{Response: &fnpb.StateResponse_Clear{Clear: &fnpb.StateClearResponse{}}}, err
	default:
		return nil, fmt.Errorf("state request %T is not supported", r)
	}
}

// side answers a side input request: reads only, a page at a time.
func (s *StateServer) side(req *fnpb.StateRequest) (*fnpb.StateResponse, error) {
	get := req.GetGet()
	if get == nil {
		return nil, fmt.Errorf("side inputs are read-only; got %T", req.GetRequest())
	}
	token := get.GetContinuationToken()
	var data, next []byte
	var err error
	switch k := req.GetStateKey().GetType().(type) {
	case *fnpb.StateKey_IterableSideInput_:
		r := k.IterableSideInput
		data, next, err = s.st.SideIterable(r.GetTransformId(), r.GetSideInputId(), r.GetWindow(), token, s.page)
	case *fnpb.StateKey_MultimapSideInput_:
		r := k.MultimapSideInput
		data, next, err = s.st.SideMulti(r.GetTransformId(), r.GetSideInputId(), r.GetWindow(), r.GetKey(), token, s.page)
	case *fnpb.StateKey_MultimapKeysSideInput_:
		r := k.MultimapKeysSideInput
		data, next, err = s.st.SideKeys(r.GetTransformId(), r.GetSideInputId(), r.GetWindow(), token, s.page)
	default:
		return nil, fmt.Errorf("state key %T is not supported by weir yet", k)
	}
	if err != nil {
		return nil, err
	}
	return &fnpb.StateResponse{Response: &fnpb.StateResponse_Get{Get: &fnpb.StateGetResponse{Data: data, ContinuationToken: next}}}, nil
}

// page returns the part of data a continuation token asks for.
func page(data, token []byte, size int) (*fnpb.StateResponse, error) {
	off := 0
	if len(token) > 0 {
		n, err := strconv.Atoi(string(token))
		if err != nil || n < 0 || n > len(data) {
			return nil, fmt.Errorf("bad continuation token %q", token)
		}
		off = n
	}
	end := min(len(data), off+size)
	var next []byte
	if end < len(data) {
		next = []byte(strconv.Itoa(end))
	}
	return &fnpb.StateResponse{Response: &fnpb.StateResponse_Get{Get: &fnpb.StateGetResponse{Data: data[off:end], ContinuationToken: next}}}, nil
}
