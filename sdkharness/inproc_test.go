package sdkharness

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	fnpb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/fnexecution_v1"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// chunkedState serves one bag whose contents it returns in pieces of n
// bytes, with the offset of the next piece as continuation token, and
// records the appends and clears it sees.
type chunkedState struct {
	data []byte
	n    int
	log  []string
}

func (s *chunkedState) HandleState(req *fnpb.StateRequest) *fnpb.StateResponse {
	switch r := req.GetRequest().(type) {
	case *fnpb.StateRequest_Get:
		off := 0
		if t := r.Get.GetContinuationToken(); len(t) > 0 {
			off, _ = strconv.Atoi(string(t))
		}
		end := min(len(s.data), off+s.n)
		var next []byte
		if end < len(s.data) {
			next = []byte(strconv.Itoa(end))
		}
		return &fnpb.StateResponse{Response: &fnpb.StateResponse_Get{Get: &fnpb.StateGetResponse{Data: s.data[off:end], ContinuationToken: next}}}
	case *fnpb.StateRequest_Append:
		s.log = append(s.log, "append "+string(r.Append.GetData()))
		return &fnpb.StateResponse{}
	case *fnpb.StateRequest_Clear:
		s.log = append(s.log, "clear")
		return &fnpb.StateResponse{}
	}
	return &fnpb.StateResponse{Error: "unsupported"}
}

// TestLocalStateReadsEveryChunk: an in-process bag read follows the
// handler's continuation tokens to the end, whatever the chunk size.
func TestLocalStateReadsEveryChunk(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 7))
	for _, n := range []int{1, 3, 10, 69, 70, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			st := &localState{inst: "b1", h: &chunkedState{data: data, n: n}}
			r, err := st.OpenBagUserStateReader(context.Background(), exec.StreamID{PtransformID: "t"}, "s", []byte("k"), []byte("w"))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Errorf("read %q, want %q", got, data)
			}
		})
	}
}

// TestLocalStateWritesAndEnd: appends and clears reach the handler in
// order, and after the bundle ends every request is refused.
func TestLocalStateWritesAndEnd(t *testing.T) {
	h := &chunkedState{n: 10}
	st := &localState{inst: "b1", h: h}
	ctx, id := context.Background(), exec.StreamID{PtransformID: "t"}
	ap, _ := st.OpenBagUserStateAppender(ctx, id, "s", []byte("k"), []byte("w"))
	cl, _ := st.OpenBagUserStateClearer(ctx, id, "s", []byte("k"), []byte("w"))
	for _, w := range []struct {
		w io.Writer
		p string
	}{{ap, "x"}, {cl, ""}, {ap, "y"}} {
		if _, err := w.w.Write([]byte(w.p)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := strings.Join(h.log, ","), "append x,clear,append y"; got != want {
		t.Errorf("handler saw %q, want %q", got, want)
	}
	st.end()
	if _, err := ap.Write([]byte("z")); err == nil || !strings.Contains(err.Error(), "ended bundle") {
		t.Errorf("append after the end: %v, want an ended-bundle error", err)
	}
	r, _ := st.OpenBagUserStateReader(ctx, id, "s", []byte("k"), []byte("w"))
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Error("read after the end succeeded")
	}
}

// TestLocalDataElements: a data source gets its input chunks and then the
// timers of the transforms it expects, each timer stream once per bundle;
// writes come back per sink and timer stream, empty ones left out.
func TestLocalDataElements(t *testing.T) {
	tk := harness.TimerKey{Transform: "pardo", Family: "f"}
	other := harness.TimerKey{Transform: "elsewhere", Family: "f"}
	d := newLocalData(harness.BundleSpec{
		Inputs: map[string][][]byte{"src": {[]byte("a"), []byte("b")}},
		Timers: map[harness.TimerKey][]byte{tk: []byte("t1"), other: []byte("t2")},
	})
	ctx := context.Background()
	read := func(src string) []string {
		ch, err := d.OpenElementChan(ctx, exec.StreamID{PtransformID: src}, []string{"pardo"})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for e := range ch {
			if e.TimerFamilyID != "" {
				got = append(got, "timer "+e.PtransformID+"/"+e.TimerFamilyID+" "+string(e.Timers))
			} else {
				got = append(got, "data "+e.PtransformID+" "+string(e.Data))
			}
		}
		return got
	}
	if got, want := strings.Join(read("src"), ","), "data src a,data src b,timer pardo/f t1"; got != want {
		t.Errorf("first source read %q, want %q", got, want)
	}
	if got := read("src2"); len(got) != 0 {
		t.Errorf("a second source got %q; its input is empty and the timers went to the first", got)
	}
	w, _ := d.OpenWrite(ctx, exec.StreamID{PtransformID: "sink"})
	w.Write([]byte("out1"))
	w.Write([]byte("out2"))
	d.OpenWrite(ctx, exec.StreamID{PtransformID: "unused"})
	tw, _ := d.OpenTimerWrite(ctx, exec.StreamID{PtransformID: "pardo"}, "f")
	tw.Write([]byte("set"))
	if got := d.outputs(); len(got) != 1 || string(got["sink"]) != "out1out2" {
		t.Errorf("outputs %q, want only sink=out1out2", got)
	}
	if got := d.timerOutputs(); len(got) != 1 || string(got[tk]) != "set" {
		t.Errorf("timer outputs %q, want only %v=set", got, tk)
	}
}

// bagState is a harness.BagStateHandler over a map of bags.
type bagState struct {
	chunkedState
	bags map[string][]byte
}

func bagID(transform, stateID string, window, key []byte) string {
	return transform + "/" + stateID + "/" + string(window) + "/" + string(key)
}

func (s *bagState) ReadBag(transform, stateID string, window, key []byte) ([]byte, error) {
	return s.bags[bagID(transform, stateID, window, key)], nil
}

func (s *bagState) AppendBag(transform, stateID string, window, key, data []byte) error {
	id := bagID(transform, stateID, window, key)
	s.bags[id] = append(s.bags[id], data...)
	return nil
}

func (s *bagState) ClearBag(transform, stateID string, window, key []byte) error {
	delete(s.bags, bagID(transform, stateID, window, key))
	return nil
}

// TestLocalStateBagCalls: with a harness.BagStateHandler, bag reads, appends and
// clears are direct calls on the cell the SDK named, and end refuses them.
func TestLocalStateBagCalls(t *testing.T) {
	h := &bagState{bags: map[string][]byte{}}
	st := &localState{inst: "b1", h: h}
	ctx, id := context.Background(), exec.StreamID{PtransformID: "t"}
	read := func() string {
		r, err := st.OpenBagUserStateReader(ctx, id, "s", []byte("k"), []byte("w"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ap, _ := st.OpenBagUserStateAppender(ctx, id, "s", []byte("k"), []byte("w"))
	cl, _ := st.OpenBagUserStateClearer(ctx, id, "s", []byte("k"), []byte("w"))
	steps := []struct {
		w    io.Writer
		p    string
		want string
	}{{ap, "x", "x"}, {ap, "y", "xy"}, {cl, "", ""}, {ap, "z", "z"}}
	for i, s := range steps {
		if _, err := s.w.Write([]byte(s.p)); err != nil {
			t.Fatal(err)
		}
		if got := read(); got != s.want {
			t.Errorf("after step %d the bag is %q, want %q", i, got, s.want)
		}
	}
	if len(h.log) != 0 {
		t.Errorf("bag requests went through HandleState: %q", h.log)
	}
	st.end()
	if _, err := ap.Write([]byte("z")); err == nil {
		t.Error("append after the end succeeded")
	}
}
