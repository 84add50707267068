package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAligner scripts what senders deliver and checks what the task loop
// sees: messages in order, held back after a sender's barrier until all
// senders have one (or ended), then one barrier and the held messages.
func TestAligner(t *testing.T) {
	// msgs: "a:d1" data d1 from a; "a:B3" barrier 3 from a; "a:E" end of
	// input from a; ":B4" barrier 4 from the coordinator. Port 0 unless the
	// sender is "s" (port 1, a side input).
	tests := []struct {
		name    string
		senders []int // per port
		in      string
		want    string // what the task sees
		ended   bool   // the aligner reported ended inputs
	}{
		{"pass through", []int{2}, "a:d1 b:d2 a:d3", "d1 d2 d3", false},
		{"align two", []int{2}, "a:d1 a:B1 a:d2 b:d3 b:B1 b:d4", "d1 d3 B1 d2 d4", false},
		{"ended sender counts as aligned", []int{2}, "a:B1 a:d2 b:d3 b:E", "d3 E B1 d2", false},
		{"next barrier held too", []int{2}, "a:B1 a:B2 a:d5 b:B1 b:B2", "B1 B2 d5", false},
		{"stale barrier ignored", []int{1}, "a:B2 a:B1 a:d1", "B2 d1", false},
		{"side port", []int{1, 1}, "a:B1 a:d1 s:d2 s:B1", "d2 B1 d1", false},
		{"coordinator after ends", []int{1}, "a:d1 a:E :B4 :B4", "d1 E B4", true},
		{"coordinator ignored while inputs live", []int{1}, ":B4 a:d1", "d1", false},
		{"no inputs", nil, ":B1", "B1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ports []portState
			for _, n := range tc.senders {
				ports = append(ports, portState{senders: n})
			}
			raw := make(inbox, 64)
			ended := false
			a := newAligner(raw, ports, func() { ended = true }, func(int64, time.Duration) {})
			a.out = make(inbox, 64)
			if a.ended() {
				a.onEnded()
			}
			for _, f := range strings.Fields(tc.in) {
				sender, what, _ := strings.Cut(f, ":")
				m := msg{sender: sender}
				if sender == "s" {
					m.port = 1
				}
				switch what[0] {
				case 'd':
					m.kind, m.data = msgData, []byte(what)
				case 'B':
					m.kind = msgBarrier
					fmt.Sscan(what[1:], &m.chk)
				case 'E':
					m.kind = msgEOI
				}
				for _, o := range a.step(m, time.Time{}) {
					a.out <- o
				}
			}
			var got []string
			for len(a.out) > 0 {
				m := <-a.out
				switch m.kind {
				case msgData:
					got = append(got, string(m.data))
				case msgBarrier:
					got = append(got, fmt.Sprintf("B%d", m.chk))
				case msgEOI:
					got = append(got, "E")
				}
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("task saw %q, want %q", g, tc.want)
			}
			if ended != tc.ended {
				t.Errorf("ended reported %v, want %v", ended, tc.ended)
			}
		})
	}
}

// TestAlignerTimesAlignment: the time an alignment took runs from its
// first barrier to its last, on the clock the steps are given.
func TestAlignerTimesAlignment(t *testing.T) {
	var took time.Duration
	var chk int64
	a := newAligner(make(inbox), []portState{{senders: 2}}, func() {}, func(c int64, d time.Duration) { chk, took = c, d })
	t0 := time.Unix(1000, 0)
	if out := a.step(msg{kind: msgBarrier, sender: "a", chk: 7}, t0); len(out) != 0 {
		t.Fatalf("first barrier passed %d messages on", len(out))
	}
	a.step(msg{kind: msgData, sender: "a", data: []byte("held")}, t0.Add(time.Second))
	out := a.step(msg{kind: msgBarrier, sender: "b", chk: 7}, t0.Add(5*time.Second))
	if len(out) != 2 || out[0].kind != msgBarrier || string(out[1].data) != "held" {
		t.Fatalf("alignment passed on %v, want the barrier then the held message", out)
	}
	if chk != 7 || took != 5*time.Second {
		t.Errorf("onAlign(%d, %v), want (7, 5s)", chk, took)
	}
}

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
	go a.run(ctx, wallClock{})
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
	if len(a.held) != 0 {
		t.Fatalf("the aligner holds %d messages", len(a.held))
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
