package plan

import (
	"errors"
	"fmt"
	"sort"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/trigger"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// Validate reports, by name and URN, everything in p that weir cannot run.
// All problems are returned together.
func Validate(p *pipepb.Pipeline) error {
	var errs []error
	comps := p.GetComponents()
	supportedReqs := map[string]bool{ReqSplittableDoFn: true, ReqFinalization: true, ReqStableInput: true, ReqStateful: true}
	for _, r := range p.GetRequirements() {
		if !supportedReqs[r] {
			errs = append(errs, fmt.Errorf("pipeline requirement %s is not supported by weir yet", r))
		}
	}
	ids := sortedKeys(comps.GetTransforms())
	for _, id := range ids {
		t := comps.GetTransforms()[id]
		if len(t.GetSubtransforms()) > 0 {
			continue
		}
		if err := validateLeaf(id, t); err != nil {
			errs = append(errs, err)
		}
	}
	// Coders weir does not know (every SDK has its own: Java's and Python's
	// custom coders, the TypeScript SDK's genericobjectjs) are opaque bytes:
	// the runner length-prefixes them where it must see element boundaries
	// (wire.LengthPrefixUnknown) and groups such keys by their encoded
	// bytes. Only a window coder must be decoded by weir itself.
	for _, id := range sortedKeys(comps.GetWindowingStrategies()) {
		ws := comps.GetWindowingStrategies()[id]
		switch u := ws.GetWindowFn().GetUrn(); u {
		case URNGlobalWindows, URNFixedWindows, URNSlidingWindows, URNSessions:
		default:
			errs = append(errs, fmt.Errorf("windowing strategy %q uses window fn %q, which weir does not support", id, u))
		}
		if err := windowCoderKnown(comps, ws); err != nil {
			errs = append(errs, fmt.Errorf("windowing strategy %q (window fn %q): %w", id, ws.GetWindowFn().GetUrn(), err))
		}
		if err := trigger.Supported(ws.GetTrigger()); err != nil {
			errs = append(errs, fmt.Errorf("windowing strategy %q: %w", id, err))
		} else if ws.GetWindowFn().GetUrn() == URNSessions && !onTimeTrigger(ws.GetTrigger()) {
			errs = append(errs, fmt.Errorf("windowing strategy %q merges session windows with trigger %s; weir supports only the default trigger with merging windows", id, triggerName(ws.GetTrigger())))
		}
	}
	for _, id := range sortedKeys(comps.GetEnvironments()) {
		env := comps.GetEnvironments()[id]
		switch u := env.GetUrn(); u {
		case URNEnvExternal, URNEnvProcess:
		default:
			errs = append(errs, fmt.Errorf("environment %q is %q; weir runs LOOPBACK (%s) and PROCESS (%s) environments: pass --environment_type=LOOPBACK or PROCESS", id, u, URNEnvExternal, URNEnvProcess))
		}
	}
	return errors.Join(errs...)
}

// windowCoders are the window coder URNs weir decodes. Any other coder is
// opaque to weir (see Validate).
var windowCoders = map[string]bool{wire.URNGlobalWindow: true, wire.URNIntervalWindow: true}

// windowCoderKnown reports an error naming the window coder of ws unless
// it is one weir decodes (global_window or interval_window).
func windowCoderKnown(comps *pipepb.Components, ws *pipepb.WindowingStrategy) error {
	id := ws.GetWindowCoderId()
	c, ok := comps.GetCoders()[id]
	if !ok {
		return fmt.Errorf("window coder %q is missing from the pipeline's coders", id)
	}
	if u := c.GetSpec().GetUrn(); !windowCoders[u] {
		return fmt.Errorf("window coder %q has URN %q; weir must decode windows and knows only %s and %s", id, u, wire.URNGlobalWindow, wire.URNIntervalWindow)
	}
	return nil
}

func validateLeaf(id string, t *pipepb.PTransform) error {
	urn := t.GetSpec().GetUrn()
	name := t.GetUniqueName()
	switch {
	case urn == URNImpulse, urn == URNGBK, urn == URNFlatten:
		return nil
	case urn == URNTestStream:
		ts := &pipepb.TestStreamPayload{}
		if err := proto.Unmarshal(t.GetSpec().GetPayload(), ts); err != nil {
			return fmt.Errorf("transform %q (%s): decoding TestStream payload: %w", name, id, err)
		}
		if ts.GetEndpoint().GetUrl() != "" {
			return fmt.Errorf("transform %q (%s) is a TestStream served from %s; weir replays only TestStreams whose events are in the pipeline", name, id, ts.GetEndpoint().GetUrl())
		}
		return nil
	case urn == URNParDo:
		pdo := &pipepb.ParDoPayload{}
		if err := proto.Unmarshal(t.GetSpec().GetPayload(), pdo); err != nil {
			return fmt.Errorf("transform %q (%s): decoding ParDo payload: %w", name, id, err)
		}
		for _, sid := range sortedKeys(pdo.GetStateSpecs()) {
			switch u := pdo.GetStateSpecs()[sid].GetProtocol().GetUrn(); u {
			case URNBagUserState, URNMultimapUserState, URNOrderedListUserState:
			default:
				return fmt.Errorf("transform %q (%s, %s): state %q uses protocol %q, which weir does not support yet", name, id, urn, sid, u)
			}
		}
		if pdo.GetRequiresTimeSortedInput() {
			return fmt.Errorf("transform %q (%s, %s) requires time-sorted input, which weir does not support yet", name, id, urn)
		}
		return nil
	case sdkTransforms[urn]:
		return nil
	case urn == "":
		return fmt.Errorf("transform %q (%s) has no URN and no subtransforms", name, id)
	default:
		return fmt.Errorf("transform %q (%s) has URN %q, which weir does not support", name, id, urn)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// onTimeTrigger reports whether tr is the default trigger, the only one
// weir runs with merging windows (it keeps no per-window trigger state).
func onTimeTrigger(tr *pipepb.Trigger) bool {
	_, isDefault := tr.GetTrigger().(*pipepb.Trigger_Default_)
	return tr.GetTrigger() == nil || isDefault
}

func triggerName(tr *pipepb.Trigger) string {
	if tr.GetTrigger() == nil {
		return "default"
	}
	return fmt.Sprintf("%T", tr.GetTrigger())[len("*pipeline_v1.Trigger_"):]
}
