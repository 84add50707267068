// Package trigger owns Beam trigger semantics: given a pipeline's Trigger
// proto, it decides, for one key and window, when a pane fires and when the
// window is finished.
//
// It is pure logic in the style of etcd raft's RawNode: no goroutines, no
// I/O, no clock. The caller (weir's GroupByKey) keeps one State per (key,
// window), persists it with Encode/Decode, and calls Machine.OnEvent when
// something happened to that window. OnEvent reports what to do; the caller
// does it.
//
// # The caller's contract
//
// The semantics are those of Beam's Java TriggerStateMachines run by
// ReduceFnRunner (runners/core-java), which is what Flink and the Java
// direct runner execute, except where Beam's Go conformance tests (which
// prism passes) need otherwise: processing-time readiness and windows left
// open by a processing-time firing, both below. The division of labour
// with the runner is the same as between those state machines and
// ReduceFnRunner:
//
//   - Call OnEvent when elements arrive (Input.Elements > 0). Each call
//     evaluates the trigger once, after all Input.Elements elements have been
//     added, so it fires at most one pane. Beam's Go conformance tests expect
//     element granularity (TestTriggerAlways wants panes 1, 2, 3, not 6;
//     TestTriggerOrFinally wants 4 panes, not 2): call once per element.
//   - Call OnEvent (Elements 0) once when the input watermark first passes
//     WindowEnd: that is the only event-time condition any Beam trigger has.
//   - Call OnEvent (Elements 0) when processing time reaches a wakeAt that
//     OnEvent returned (a processing-time timer). AfterProcessingTime is
//     ready once processing time reaches first arrival plus its delay, as
//     in prism (Beam's Go tests advance a TestStream's processing time by
//     exactly the delay and expect a firing); Java's state machine waits a
//     millisecond longer (isAfter).
//   - When OnEvent reports fire, emit the pane: the buffered elements (all of
//     them since the window began when accumulating). An empty pane is not
//     emitted: the Go SDK asks for ClosingBehavior EMIT_IF_NONEMPTY and
//     OnTimeBehavior FIRE_IF_NONEMPTY. The trigger state has advanced either
//     way, as in ReduceFnRunner.
//   - When OnEvent reports finished (State.Finished), the trigger fires no
//     more panes. Usually the window is then closed (State.Closed): drop
//     further elements for it (Beam counts them as
//     droppedDueToClosedWindow) but keep the State until the window
//     expires, as the tombstone that says so.
//   - Unless the firing that finished the trigger was a processing-time one
//     (it would not have fired without an AfterProcessingTime being
//     ready): then the window stays open (Finished but not Closed). Keep
//     the elements that still arrive, without calling OnEvent, and emit
//     them as one pane when the watermark passes WindowEnd, or at expiry
//     for those that arrive later. This departs from Java, which drops
//     them, and follows prism, which keeps a window's elements until its
//     end whatever its trigger did: Beam's Go test
//     TestTriggerAfterProcessingTime fires AfterProcessingTime once on
//     processing time and expects the element that arrives after it in a
//     second pane, while TestTriggerElementCount and TestTriggerOrFinally
//     expect the elements after a finishing ElementCount to be dropped.
//   - Expiry is the caller's: once the watermark passes WindowEnd plus the
//     allowed lateness, emit a final pane if the window is not closed and
//     elements are buffered, then delete the window's state. Late elements
//     behind that point are dropped. Beam's garbage-collection timer does the
//     same without consulting the trigger; with zero allowed lateness the
//     watermark passing the end of the window is that expiry.
//   - Pane metadata is the caller's too: a pane fired while the watermark is
//     not past WindowEnd is EARLY; the first pane after it is ON_TIME; later
//     ones are LATE; the pane that closes the window, or the pane at expiry,
//     is the last.
//
// Merging windows (sessions) need trigger state merged when windows merge;
// this package has no merge yet, so a runner should only combine it with
// non-merging windows, or with triggers that keep no state (Default).
package trigger

import (
	"fmt"
	"math"
	"strings"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
)

// Limits on a trigger's size, so that its state stays small and evaluation
// (which recurses) stays shallow. Real triggers have a handful of parts.
const (
	maxNodes = 1024
	maxDepth = 32
)

// kind is the type of one part of a trigger.
type kind uint8

const (
	kDefault kind = iota + 1
	kAlways
	kNever
	kElementCount
	kEndOfWindow
	kProcessingTime // AfterProcessingTime and AfterSynchronizedProcessingTime
	kAll
	kAny
	kEach
	kRepeat
	kOrFinally
)

// node is one part of a compiled trigger. Nodes are stored in preorder, so
// the subtree of node i is nodes[i:nodes[i].end].
type node struct {
	kind     kind
	name     string // as in the proto: "AfterAll", "AfterSynchronizedProcessingTime", ...
	children []int  // AfterAll/AfterAny/AfterEach; Repeat: [sub]; OrFinally: [main, finally]
	early    int    // AfterEndOfWindow: early firings node, or -1
	late     int    // AfterEndOfWindow: late firings node, or -1
	count    int64  // ElementCount: elements needed
	shift    []transform
	// sync: AfterSynchronizedProcessingTime, whose target is the first
	// millisecond after the first element's arrival.
	sync bool
	end  int // first node index after this subtree
}

// transform is one of AfterProcessingTime's timestamp transforms: a delay
// (period 0) or an alignment.
type transform struct {
	delay          int64
	period, offset int64
}

func (t transform) apply(ts int64) int64 {
	if t.period == 0 {
		return addSat(ts, t.delay)
	}
	// The smallest offset + k*period at or after ts (Beam's AlignFn, with a
	// floor modulus so that times before the offset align forwards too).
	r := (ts - t.offset) % t.period
	if r < 0 {
		r += t.period
	}
	if r == 0 {
		return ts
	}
	return addSat(ts, t.period-r)
}

func addSat(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// Machine evaluates one trigger. It is immutable once built and safe for
// concurrent use; all per-window data lives in the State passed to OnEvent.
type Machine struct {
	nodes []node
}

// Supported reports nil if weir implements every part of tr, or an error
// naming the first unsupported or malformed part, by its path in the trigger
// (for example "Repeat/AfterAll[1]/ElementCount: element_count must be at
// least 1, got 0"). Every trigger type of Beam's model is implemented; the
// errors are about malformed protos and absurd sizes. A nil trigger, or one
// with no type set, is Beam's default trigger.
func Supported(tr *pipepb.Trigger) error {
	_, err := compile(tr)
	return err
}

// New builds the machine for tr. It fails exactly when Supported does.
func New(tr *pipepb.Trigger) (*Machine, error) {
	nodes, err := compile(tr)
	if err != nil {
		return nil, err
	}
	return &Machine{nodes: nodes}, nil
}

// String renders the trigger, e.g. "Repeat(AfterAll(Always, ElementCount(5)))".
func (m *Machine) String() string {
	var b strings.Builder
	m.format(&b, 0)
	return b.String()
}

func (m *Machine) format(b *strings.Builder, i int) {
	n := &m.nodes[i]
	b.WriteString(n.name)
	switch n.kind {
	case kElementCount:
		fmt.Fprintf(b, "(%d)", n.count)
	case kProcessingTime:
		if len(n.shift) == 0 {
			return
		}
		b.WriteString("(")
		for j, t := range n.shift {
			if j > 0 {
				b.WriteString(", ")
			}
			if t.period == 0 {
				fmt.Fprintf(b, "+%dms", t.delay)
			} else {
				fmt.Fprintf(b, "align %dms+%dms", t.period, t.offset)
			}
		}
		b.WriteString(")")
	case kEndOfWindow:
		if n.early < 0 && n.late < 0 {
			return
		}
		b.WriteString("(")
		if n.early >= 0 {
			b.WriteString("early: ")
			m.format(b, n.early)
		}
		if n.late >= 0 {
			if n.early >= 0 {
				b.WriteString(", ")
			}
			b.WriteString("late: ")
			m.format(b, n.late)
		}
		b.WriteString(")")
	case kAll, kAny, kEach, kRepeat, kOrFinally:
		b.WriteString("(")
		for j, c := range n.children {
			if j > 0 {
				b.WriteString(", ")
			}
			m.format(b, c)
		}
		b.WriteString(")")
	}
}

// compile flattens tr into nodes in preorder, validating it.
func compile(tr *pipepb.Trigger) ([]node, error) {
	c := &compiler{}
	if tr.GetTrigger() == nil {
		tr = &pipepb.Trigger{Trigger: &pipepb.Trigger_Default_{Default: &pipepb.Trigger_Default{}}}
	}
	if _, err := c.add(tr, "", 0); err != nil {
		return nil, err
	}
	return c.nodes, nil
}

type compiler struct {
	nodes []node
}

// errPart builds an error naming the part of the trigger at path.
func errPart(path string, format string, args ...any) error {
	return fmt.Errorf("trigger %s: %s", path, fmt.Sprintf(format, args...))
}

// add compiles tr, whose parent's path is parent, and returns its index.
func (c *compiler) add(tr *pipepb.Trigger, parent string, depth int) (int, error) {
	name := triggerName(tr)
	path := name
	if parent != "" {
		path = parent + "/" + name
	}
	if tr.GetTrigger() == nil {
		return 0, errPart(path, "no trigger type set")
	}
	if depth >= maxDepth {
		return 0, errPart(path, "nested more than %d deep", maxDepth)
	}
	if len(c.nodes) >= maxNodes {
		return 0, errPart(path, "the trigger has more than %d parts", maxNodes)
	}
	i := len(c.nodes)
	c.nodes = append(c.nodes, node{name: name, early: -1, late: -1})
	n := node{name: name, early: -1, late: -1}
	sub := func(t *pipepb.Trigger, label string) (int, error) {
		return c.add(t, path+label, depth+1)
	}
	list := func(ts []*pipepb.Trigger) ([]int, error) {
		if len(ts) == 0 {
			return nil, errPart(path, "no subtriggers")
		}
		var out []int
		for j, t := range ts {
			k, err := sub(t, fmt.Sprintf("[%d]", j))
			if err != nil {
				return nil, err
			}
			out = append(out, k)
		}
		return out, nil
	}
	var err error
	switch t := tr.GetTrigger().(type) {
	case *pipepb.Trigger_Default_:
		n.kind = kDefault
	case *pipepb.Trigger_Always_:
		n.kind = kAlways
	case *pipepb.Trigger_Never_:
		n.kind = kNever
	case *pipepb.Trigger_ElementCount_:
		n.kind = kElementCount
		n.count = int64(t.ElementCount.GetElementCount())
		if n.count < 1 {
			return 0, errPart(path, "element_count must be at least 1, got %d", n.count)
		}
	case *pipepb.Trigger_AfterEndOfWindow_:
		n.kind = kEndOfWindow
		// Both sub-triggers are optional; a message with no type set counts
		// as absent.
		if e := t.AfterEndOfWindow.GetEarlyFirings(); e.GetTrigger() != nil {
			if n.early, err = sub(e, ".early"); err != nil {
				return 0, err
			}
		}
		if l := t.AfterEndOfWindow.GetLateFirings(); l.GetTrigger() != nil {
			if n.late, err = sub(l, ".late"); err != nil {
				return 0, err
			}
		}
	case *pipepb.Trigger_AfterProcessingTime_:
		n.kind = kProcessingTime
		for j, tt := range t.AfterProcessingTime.GetTimestampTransforms() {
			switch {
			case tt.GetDelay() != nil:
				d := tt.GetDelay().GetDelayMillis()
				if d < 0 {
					return 0, errPart(path, "timestamp_transforms[%d]: negative delay %dms", j, d)
				}
				n.shift = append(n.shift, transform{delay: d})
			case tt.GetAlignTo() != nil:
				a := tt.GetAlignTo()
				if a.GetPeriod() <= 0 {
					return 0, errPart(path, "timestamp_transforms[%d]: align_to period must be positive, got %dms", j, a.GetPeriod())
				}
				n.shift = append(n.shift, transform{period: a.GetPeriod(), offset: a.GetOffset()})
			case tt.GetTimestampTransform() == nil:
				return 0, errPart(path, "timestamp_transforms[%d]: no transform type set", j)
			default:
				return 0, errPart(path, "timestamp_transforms[%d]: unsupported timestamp transform %T", j, tt.GetTimestampTransform())
			}
		}
	case *pipepb.Trigger_AfterSynchronizedProcessingTime_:
		// Synchronized processing time is the processing time that every
		// upstream stage has reached. weir, like Beam's non-Dataflow
		// runners, does not track it separately: it is processing time,
		// and the trigger is ready once it has passed the first element's
		// arrival (Java's isAfter), so that elements arriving together
		// share a pane.
		n.kind = kProcessingTime
		n.sync = true
	case *pipepb.Trigger_AfterAll_:
		n.kind = kAll
		n.children, err = list(t.AfterAll.GetSubtriggers())
	case *pipepb.Trigger_AfterAny_:
		n.kind = kAny
		n.children, err = list(t.AfterAny.GetSubtriggers())
	case *pipepb.Trigger_AfterEach_:
		n.kind = kEach
		n.children, err = list(t.AfterEach.GetSubtriggers())
	case *pipepb.Trigger_Repeat_:
		n.kind = kRepeat
		var k int
		if k, err = sub(t.Repeat.GetSubtrigger(), ""); err == nil {
			n.children = []int{k}
		}
	case *pipepb.Trigger_OrFinally_:
		n.kind = kOrFinally
		var main, fin int
		if main, err = sub(t.OrFinally.GetMain(), ".main"); err != nil {
			return 0, err
		}
		if fin, err = sub(t.OrFinally.GetFinally(), ".finally"); err != nil {
			return 0, err
		}
		n.children = []int{main, fin}
	default:
		return 0, errPart(path, "unsupported trigger type %T", t)
	}
	if err != nil {
		return 0, err
	}
	n.end = len(c.nodes)
	c.nodes[i] = n
	return i, nil
}

// triggerName is the proto's name for tr's type.
func triggerName(tr *pipepb.Trigger) string {
	switch tr.GetTrigger().(type) {
	case *pipepb.Trigger_Default_:
		return "Default"
	case *pipepb.Trigger_Always_:
		return "Always"
	case *pipepb.Trigger_Never_:
		return "Never"
	case *pipepb.Trigger_ElementCount_:
		return "ElementCount"
	case *pipepb.Trigger_AfterEndOfWindow_:
		return "AfterEndOfWindow"
	case *pipepb.Trigger_AfterProcessingTime_:
		return "AfterProcessingTime"
	case *pipepb.Trigger_AfterSynchronizedProcessingTime_:
		return "AfterSynchronizedProcessingTime"
	case *pipepb.Trigger_AfterAll_:
		return "AfterAll"
	case *pipepb.Trigger_AfterAny_:
		return "AfterAny"
	case *pipepb.Trigger_AfterEach_:
		return "AfterEach"
	case *pipepb.Trigger_Repeat_:
		return "Repeat"
	case *pipepb.Trigger_OrFinally_:
		return "OrFinally"
	case nil:
		return "(empty)"
	default:
		return fmt.Sprintf("%T", tr.GetTrigger())
	}
}
