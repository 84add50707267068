package sdkharness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/exec"
	"github.com/weir-runner/weir/runner/engine/harness"
)

// memState is a harness.State over a map of bags and one iterable side
// input, which records the bag calls it sees.
type memState struct {
	bags  map[string][]byte
	side  []byte
	log   []string
	reads int
}

func bagID(c harness.Cell) string {
	return c.Transform + "/" + c.StateID + "/" + string(c.Window) + "/" + string(c.Key)
}

func (s *memState) ReadBag(c harness.Cell) ([]byte, error) {
	s.reads++
	return s.bags[bagID(c)], nil
}

func (s *memState) AppendBag(c harness.Cell, data []byte) error {
	s.log = append(s.log, "append "+string(data))
	s.bags[bagID(c)] = append(s.bags[bagID(c)], data...)
	return nil
}

func (s *memState) ClearBag(c harness.Cell) error {
	s.log = append(s.log, "clear")
	delete(s.bags, bagID(c))
	return nil
}

var errNotHere = errors.New("not in this test")

func (s *memState) ReadMap(harness.Cell, []byte) ([]byte, error)           { return nil, errNotHere }
func (s *memState) AppendMap(harness.Cell, []byte, []byte) error           { return errNotHere }
func (s *memState) ClearMapKey(harness.Cell, []byte) error                 { return errNotHere }
func (s *memState) MapKeys(harness.Cell) ([]byte, error)                   { return nil, errNotHere }
func (s *memState) ClearMap(harness.Cell) error                            { return errNotHere }
func (s *memState) ReadOrdered(harness.Cell, int64, int64) ([]byte, error) { return nil, errNotHere }
func (s *memState) AppendOrdered(harness.Cell, []byte) error               { return errNotHere }
func (s *memState) ClearOrdered(harness.Cell, int64, int64) error          { return errNotHere }

// SideIterable pages the side input by offset, max bytes at a time.
func (s *memState) SideIterable(_, _ string, _, token []byte, max int) ([]byte, []byte, error) {
	off := 0
	if len(token) > 0 {
		off, _ = strconv.Atoi(string(token))
	}
	end := min(len(s.side), off+max)
	var next []byte
	if end < len(s.side) {
		next = []byte(strconv.Itoa(end))
	}
	return s.side[off:end], next, nil
}

func (s *memState) SideMulti(_, _ string, _, _, _ []byte, _ int) ([]byte, []byte, error) {
	return nil, nil, errNotHere
}

func (s *memState) SideKeys(_, _ string, _, _ []byte, _ int) ([]byte, []byte, error) {
	return nil, nil, errNotHere
}

// TestLocalStateReadsEveryPage: an in-process side input read follows the
// continuation tokens to the end, whatever the page size.
func TestLocalStateReadsEveryPage(t *testing.T) {
	data := []byte(strings.Repeat("0123456789", 7))
	for _, n := range []int{1, 3, 10, 69, 70, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			st := &localState{NewStateServer("b1", &memState{side: data}, n)}
			r, err := st.OpenIterableSideInput(context.Background(), exec.StreamID{PtransformID: "t"}, "s", []byte("w"))
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

// TestLocalStateBagCalls: bag reads, appends and clears are direct calls
// on the cell the SDK named, in order, and after the bundle ends every
// request is refused.
func TestLocalStateBagCalls(t *testing.T) {
	h := &memState{bags: map[string][]byte{}}
	st := &localState{NewStateServer("b1", h, 0)}
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
	if got, want := strings.Join(h.log, ","), "append x,append y,clear,append z"; got != want {
		t.Errorf("state saw %q, want %q", got, want)
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
