package state

import (
	"testing"
)

// TestTimersSetPutClear: SetTimer replaces an earlier setting of the same
// timer, PutTimer writes a timer whose fire time follows from its ID (set
// twice, it is one timer), ClearTimer removes either, and the holds follow.
func TestTimersSetPutClear(t *testing.T) {
	d := openTest(t, Options{})
	id := func(key string) TimerID {
		return TimerID{KeyGroup: 3, Domain: 1, Transform: "t", Family: "f", Key: []byte(key), Window: []byte("w")}
	}
	type step struct {
		op   string // set, put, clear
		key  string
		fire int64
		hold int64
	}
	tests := []struct {
		name      string
		steps     []step
		due       map[string]int64 // key → fire time of the due timers
		minHold   int64
		holdFound bool
	}{
		{"set then reset to a later time", []step{{"set", "a", 10, 5}, {"set", "a", 20, 15}}, map[string]int64{"a": 20}, 15, true},
		{"put twice", []step{{"put", "b", 30, 30}, {"put", "b", 30, 30}}, map[string]int64{"b": 30}, 30, true},
		{"put then clear", []step{{"put", "c", 30, 30}, {"clear", "c", 0, 0}}, map[string]int64{}, 0, false},
		{"set two, clear one", []step{{"set", "d", 40, 1}, {"set", "e", 50, 2}, {"clear", "d", 0, 0}}, map[string]int64{"e": 50}, 2, true},
		{"no hold is not a hold", []step{{"put", "f", 60, NoHold}, {"set", "g", 70, NoHold}}, map[string]int64{"f": 60, "g": 70}, 0, false},
		{"no hold beside a hold", []step{{"put", "h", 60, NoHold}, {"set", "i", 70, 65}}, map[string]int64{"h": 60, "i": 70}, 65, true},
		{"reset from no hold to a hold", []step{{"set", "j", 60, NoHold}, {"set", "j", 80, 75}}, map[string]int64{"j": 80}, 75, true},
		{"reset from a hold to no hold", []step{{"set", "k", 60, 55}, {"set", "k", 80, NoHold}}, map[string]int64{"k": 80}, 0, false},
		{"clear a timer without hold", []step{{"put", "l", 60, NoHold}, {"clear", "l", 0, 0}}, map[string]int64{}, 0, false},
		{"set again at the same time", []step{{"set", "m", 90, 85}, {"set", "m", 90, 85}, {"set", "m", 90, 85}}, map[string]int64{"m": 90}, 85, true},
		{"same time, another hold", []step{{"set", "n", 90, 85}, {"set", "n", 90, 80}}, map[string]int64{"n": 90}, 80, true},
		{"same time again, then cleared", []step{{"set", "o", 90, NoHold}, {"set", "o", 90, NoHold}, {"clear", "o", 0, 0}}, map[string]int64{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := d.NewBundle()
			defer b.Discard()
			for _, s := range tc.steps {
				var err error
				switch tm := (Timer{TimerID: id(s.key), Fire: s.fire, Hold: s.hold, Encoded: []byte(s.key)}); s.op {
				case "set":
					err = b.SetTimer(tm)
				case "put":
					err = b.PutTimer(tm)
				case "clear":
					err = b.ClearTimer(tm.TimerID)
				}
				if err != nil {
					t.Fatalf("%s %s: %v", s.op, s.key, err)
				}
			}
			due, err := b.DueTimersIn(1, 0, 8, 1000, 100)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]int64{}
			for _, tm := range due {
				if _, dup := got[string(tm.Key)]; dup {
					t.Errorf("timer %q is due twice", tm.Key)
				}
				got[string(tm.Key)] = tm.Fire
			}
			if len(got) != len(tc.due) {
				t.Errorf("due timers %v, want %v", got, tc.due)
			}
			for k, f := range tc.due {
				if got[k] != f {
					t.Errorf("timer %q fires at %d, want %d", k, got[k], f)
				}
			}
			h, found, err := b.MinHold(0, 8)
			if err != nil || found != tc.holdFound || (found && h != tc.minHold) {
				t.Errorf("MinHold = %d, %v, %v; want %d, %v", h, found, err, tc.minHold, tc.holdFound)
			}
		})
	}
}

// TestFixedTimers: a fixed timer (an expiry timer) is due like any timer,
// holds nothing, is one timer however often it is put, refuses a hold,
// and is gone once cleared as due.
func TestFixedTimers(t *testing.T) {
	d := openTest(t, Options{})
	b := d.NewBundle()
	defer b.Discard()
	tm := Timer{TimerID: TimerID{KeyGroup: 1, Domain: 8, Transform: "gc", Key: []byte("k"), Window: []byte("w")}, Fire: 50, Hold: NoHold}
	for range 2 {
		if err := b.PutFixedTimer(tm); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PutFixedTimer(Timer{TimerID: tm.TimerID, Fire: 50, Hold: 40}); err == nil {
		t.Error("a fixed timer with a hold was accepted")
	}
	due, err := b.DueTimersIn(8, 0, 4, 100, 10)
	if err != nil || len(due) != 1 || due[0].Fire != 50 {
		t.Fatalf("due %v, %v; want the one timer at 50", due, err)
	}
	if _, found, err := b.MinHold(0, 4); err != nil || found {
		t.Errorf("a fixed timer holds the watermark (found %v, %v)", found, err)
	}
	if err := b.ClearDueTimer(due[0]); err != nil {
		t.Fatal(err)
	}
	if due, err := b.DueTimersIn(8, 0, 4, 100, 10); err != nil || len(due) != 0 {
		t.Errorf("after ClearDueTimer: due %v, %v", due, err)
	}
}
