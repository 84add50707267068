package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestSendersWaitForAlignment: a sender that has sent its barrier sends
// nothing more to that consumer (but more barriers, for its other ports)
// until the consumer has aligned, while a sender slow to send its barrier
// keeps sending; the aligner holds nothing back.
func TestSendersWaitForAlignment(t *testing.T) {
	ctx := testCtx(t)
	raw := make(inbox, 4)
	g := newGate()
	a := newAligner(raw, []portState{{senders: 2}, {senders: 1}}, func() {}, nil)
	a.gate = g
	go a.run(ctx, clockwork.NewRealClock())
	gates := map[inbox]*gate{raw: g}
	fast := &router{sender: "fast", gates: gates}
	slow := &router{sender: "slow", gates: gates}

	if err := fast.send(ctx, raw, msg{kind: msgBarrier, sender: "fast", chk: 1, port: 0}); err != nil {
		t.Fatal(err)
	}
	if err := fast.send(ctx, raw, msg{kind: msgBarrier, sender: "fast", chk: 1, port: 1}); err != nil {
		t.Fatal(err) // a barrier for its other port is not held up
	}
	sent := make(chan int, 100)
	go func() {
		for i := range 20 {
			if err := fast.send(ctx, raw, msg{kind: msgData, sender: "fast", data: []byte(fmt.Sprint("f", i))}); err != nil {
				return
			}
			sent <- i
		}
	}()
	// The slow sender's data flows while the fast one waits.
	var got []string
	for i := range 10 {
		if err := slow.send(ctx, raw, msg{kind: msgData, sender: "slow", data: []byte(fmt.Sprint("s", i))}); err != nil {
			t.Fatal(err)
		}
		got = append(got, string((<-a.out).data))
	}
	select {
	case i := <-sent:
		t.Fatalf("the fast sender sent data %d before the alignment", i)
	case <-time.After(20 * time.Millisecond):
	}
	if n := a.node.Held(); n != 0 {
		t.Fatalf("the aligner holds %d messages", n)
	}
	if err := slow.send(ctx, raw, msg{kind: msgBarrier, sender: "slow", chk: 1}); err != nil {
		t.Fatal(err)
	}
	if m := <-a.out; m.kind != msgBarrier || m.chk != 1 {
		t.Fatalf("after the last barrier the task saw %+v, want barrier 1", m)
	}
	for range 20 {
		got = append(got, string((<-a.out).data))
	}
	want := "s0 s1 s2 s3 s4 s5 s6 s7 s8 s9 f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 f10 f11 f12 f13 f14 f15 f16 f17 f18 f19"
	if g := strings.Join(got, " "); g != want {
		t.Errorf("task saw %q, want %q", g, want)
	}
}
