package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"google.golang.org/protobuf/proto"
)

// Kind says who executes a stage.
type Kind int

const (
	// KindImpulse emits the single empty element of an Impulse.
	KindImpulse Kind = iota
	// KindSDK runs fused transforms in an SDK harness, one bundle at a time.
	KindSDK
	// KindGBK groups by key and window in the runner, with its buffer in Pebble.
	KindGBK
	// KindTestStream replays a TestStream's events: elements and watermarks.
	KindTestStream
)

func (k Kind) String() string {
	return [...]string{"impulse", "sdk", "gbk", "teststream"}[k]
}

// Partition says how elements on an edge are spread over the consumer's subtasks.
type Partition int

const (
	// Forward keeps an element on the subtask of the same index.
	Forward Partition = iota
	// Hash sends an element to the subtask owning its key's key group.
	Hash
	// RoundRobin spreads elements evenly.
	RoundRobin
	// Broadcast sends every element to every subtask (side inputs).
	Broadcast
)

func (p Partition) String() string {
	return [...]string{"forward", "hash", "round-robin", "broadcast"}[p]
}

// Plan is a pipeline ready to execute.
type Plan struct {
	// Components are the pipeline's components after rewriting (SDF
	// expansion, combiner lifting, wire coders).
	Components *pipepb.Components
	Stages     []*Stage // in topological order
	PColls     map[string]*PColl
}

// PColl is a PCollection that crosses a stage boundary.
type PColl struct {
	ID string
	// WireCoder is the windowed_value coder elements of this PCollection
	// travel in between stages; every part the runner must walk is
	// length-prefixed if it is not a standard coder.
	WireCoder string
	// ElemCoder is the element coder inside WireCoder.
	ElemCoder string
	Producer  *Stage // nil if nothing produces it (an empty Flatten)
	Consumers []Consumer
}

// Consumer is a stage input fed by a PCollection.
type Consumer struct {
	Stage     *Stage
	Port      int // 0 is the main input; i+1 is SideInputs[i]
	Partition Partition
}

// SideInput is a PCollection a stage reads through the state API.
type SideInput struct {
	Transform string // transform ID in the descriptor
	Local     string // side input ID (local name) within the transform
	PColl     string
	Multimap  bool
}

// Stage is a vertex of the execution graph.
type Stage struct {
	ID         string
	Kind       Kind
	Name       string   // unique name of its first transform
	Transforms []string // transform IDs, in topological order
	Input      string   // main input PCollection as the stage reads it ("" for Impulse)
	Outputs    []string // PCollections it sends to other stages
	SideInputs []SideInput
	EnvID      string
	// RoundRobinInput marks stages whose input should be spread evenly
	// (the process step of a splittable DoFn).
	RoundRobinInput bool
	// Splittable is the SDF process transform of the stage, if any.
	Splittable string
	// Stateful is set when a transform of the stage keeps per-key state or
	// timers; its input is then partitioned by key.
	Stateful bool
	// Timers are the timer families of the stage's stateful transforms.
	Timers []TimerFamily

	// SDK stages: the data source and sink transform IDs.
	SourceID string
	SinkIDs  map[string]string // PCollection ID → sink transform ID

	// GBK stages.
	WindowingStrategy *pipepb.WindowingStrategy
	InputKV           string // coder of the input KV (wire form)
}

// TimerFamily is one timer family of a stateful transform.
type TimerFamily struct {
	Transform string
	Family    string
	Coder     string // timer coder, with unknown key coders length-prefixed
	Domain    pipepb.TimeDomain_Enum
}

// Options adjust planning.
type Options struct {
	// LiftCombiners turns CombinePerKey into precombine / GBK / merge / extract.
	LiftCombiners bool
}

// Build validates p and turns it into a Plan.
func Build(p *pipepb.Pipeline, o Options) (*Plan, error) {
	if err := Validate(p); err != nil {
		return nil, err
	}
	comps := proto.Clone(p.GetComponents()).(*pipepb.Components)
	leaves, err := leafTransforms(comps, p.GetRootTransformIds(), o)
	if err != nil {
		return nil, err
	}
	b := &builder{comps: comps, plan: &Plan{Components: comps, PColls: map[string]*PColl{}}}
	leaves, err = b.expand(leaves, o)
	if err != nil {
		return nil, err
	}
	if err := b.fuse(leaves); err != nil {
		return nil, err
	}
	if err := b.wire(); err != nil {
		return nil, err
	}
	return b.plan, nil
}

// leafTransforms returns the IDs of the transforms to execute: leaves,
// plus composites weir executes natively, in an order that depends only
// on the pipeline's graph and names.
func leafTransforms(comps *pipepb.Components, roots []string, o Options) ([]string, error) {
	var out []string
	var visit func(id string) error
	visit = func(id string) error {
		t, ok := comps.GetTransforms()[id]
		if !ok {
			return fmt.Errorf("pipeline names transform %q but does not define it", id)
		}
		if o.LiftCombiners && t.GetSpec().GetUrn() == URNCombinePerKey && liftable(comps, t) {
			out = append(out, id)
			return nil
		}
		if subs := t.GetSubtransforms(); len(subs) > 0 {
			for _, s := range subs {
				if err := visit(s); err != nil {
					return err
				}
			}
			return nil
		}
		out = append(out, id)
		return nil
	}
	// The Go SDK lists root transforms in an order that differs between
	// two runs of one program; stage IDs, and the checkpoints keyed by
	// them, must not. Roots are visited by unique name.
	roots = slices.Clone(roots)
	slices.SortStableFunc(roots, func(a, b string) int {
		return strings.Compare(comps.GetTransforms()[a].GetUniqueName(), comps.GetTransforms()[b].GetUniqueName())
	})
	for _, r := range roots {
		if err := visit(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type builder struct {
	comps *pipepb.Components
	plan  *Plan
	next  int
}

func (b *builder) newID(prefix string) string {
	for {
		b.next++
		id := fmt.Sprintf("%s%d", prefix, b.next)
		if _, ok := b.comps.GetTransforms()[id]; ok {
			continue
		}
		if _, ok := b.comps.GetPcollections()[id]; ok {
			continue
		}
		if _, ok := b.comps.GetCoders()[id]; ok {
			continue
		}
		return id
	}
}

// sortedValues returns the values of m ordered by key (i0, i1, … order is
// preserved for names of equal length).
func sortedValues(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}
