package engine

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	v1pb "github.com/apache/beam/sdks/v2/go/pkg/beam/core/runtime/graphx/v1"
	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/plan"
	"github.com/weir-runner/weir/runner/wire"
	"google.golang.org/protobuf/proto"
)

// What a restore compares between a savepoint's pipeline and the new one,
// in a form that does not depend on IDs (coder, PCollection and transform
// IDs are positional: they differ between versions of a pipeline) and
// reads well in an error: DoFn identities, coder trees, window fns; and
// which unique names will not stay stable.

// urnGoDoFn is the Go SDK's DoFn spec URN (graphx.URNDoFn).
const urnGoDoFn = "beam:go:transform:dofn:v1"

// doFnIdentity names the DoFn of ParDo t: for the Go SDK the registered
// type of a structural DoFn or the symbol of a function DoFn, decoded
// from the payload (base64 of graphx/v1's TransformPayload). Its field
// values are not part of it: changing them is a legitimate upgrade. For
// other SDKs the payload is opaque (a pickled or serialized function
// whose bytes change with any edit), so only the URN is known: a DoFn
// swapped under the same name is then not detected.
func doFnIdentity(t *pipepb.PTransform) (urn, name string) {
	var pd pipepb.ParDoPayload
	if t.GetSpec().GetUrn() != plan.URNParDo || proto.Unmarshal(t.GetSpec().GetPayload(), &pd) != nil {
		return t.GetSpec().GetUrn(), ""
	}
	spec := pd.GetDoFn()
	if spec.GetUrn() != urnGoDoFn {
		return spec.GetUrn(), ""
	}
	raw, err := base64.StdEncoding.DecodeString(string(spec.GetPayload()))
	if err != nil {
		return spec.GetUrn(), ""
	}
	var tp v1pb.TransformPayload
	if proto.Unmarshal(raw, &tp) != nil {
		return spec.GetUrn(), ""
	}
	fn := tp.GetEdge().GetFn()
	switch {
	case fn.GetFn() != nil:
		return spec.GetUrn(), "func " + fn.GetFn().GetName()
	case fn.GetDynfn() != nil:
		return spec.GetUrn(), "func " + fn.GetDynfn().GetName()
	case fn.GetType() != nil:
		if k := externalKey(fn.GetType()); k != "" {
			return spec.GetUrn(), "type " + k
		}
	}
	return spec.GetUrn(), ""
}

// externalKey is the registered type name a Go type refers to (through
// pointers), "" if none.
func externalKey(t *v1pb.Type) string {
	for d := 0; t != nil && d < 8; d++ {
		if t.GetKind() == v1pb.Type_EXTERNAL {
			return t.GetExternalKey()
		}
		t = t.GetElement()
	}
	return ""
}

// coderTree describes coder id of coders with its components, by URN:
// "beam:coder:kv:v1(beam:coder:string_utf8:v1, beam:coder:varint:v1)". A
// row coder shows its schema (wire.SchemaString); another coder with a
// payload the first bytes of the payload's SHA-256, so equal trees are
// equal coders whatever their IDs.
func coderTree(coders map[string]*pipepb.Coder, id string) string {
	var sb strings.Builder
	writeCoderTree(&sb, coders, id, 0)
	return sb.String()
}

func writeCoderTree(sb *strings.Builder, coders map[string]*pipepb.Coder, id string, depth int) {
	c, ok := coders[id]
	if !ok || depth > 32 {
		fmt.Fprintf(sb, "unknown coder %q", id)
		return
	}
	urn := c.GetSpec().GetUrn()
	sb.WriteString(urn)
	if p := c.GetSpec().GetPayload(); len(p) > 0 {
		var s pipepb.Schema
		if urn == wire.URNRow && proto.Unmarshal(p, &s) == nil {
			sb.WriteString(wire.SchemaString(&s))
		} else {
			sum := sha256.Sum256(p)
			fmt.Fprintf(sb, "[payload %s]", hex.EncodeToString(sum[:6]))
		}
	}
	if len(c.GetComponentCoderIds()) > 0 {
		sb.WriteByte('(')
		for i, cid := range c.GetComponentCoderIds() {
			if i > 0 {
				sb.WriteString(", ")
			}
			writeCoderTree(sb, coders, cid, depth+1)
		}
		sb.WriteByte(')')
	}
}

// rowSchema is the schema of row coder id, or nil if it is not one.
func rowSchema(coders map[string]*pipepb.Coder, id string) *pipepb.Schema {
	c := coders[id]
	if c.GetSpec().GetUrn() != wire.URNRow {
		return nil
	}
	var s pipepb.Schema
	if proto.Unmarshal(c.GetSpec().GetPayload(), &s) != nil {
		return nil
	}
	return &s
}

// mainInput is the PCollection of ParDo t's main input ("" if none).
func mainInput(t *pipepb.PTransform) string {
	var pd pipepb.ParDoPayload
	_ = proto.Unmarshal(t.GetSpec().GetPayload(), &pd) // no side inputs if it fails
	for local, pc := range t.GetInputs() {
		if _, side := pd.GetSideInputs()[local]; !side {
			return pc
		}
	}
	return ""
}

// windowFn describes the window fn of the windowing strategy of
// PCollection pc: its URN and parameters (a fixed window's size and
// offset, a session's gap; the payload's digest for other window fns).
func windowFn(comps *pipepb.Components, pc string) string {
	ws := comps.GetWindowingStrategies()[comps.GetPcollections()[pc].GetWindowingStrategyId()]
	fn := ws.GetWindowFn()
	if len(fn.GetPayload()) == 0 {
		return fn.GetUrn()
	}
	var fixed pipepb.FixedWindowsPayload
	var sliding pipepb.SlidingWindowsPayload
	var sessions pipepb.SessionWindowsPayload
	switch {
	case fn.GetUrn() == plan.URNSessions && proto.Unmarshal(fn.GetPayload(), &sessions) == nil:
		return fmt.Sprintf("%s(gap %v)", fn.GetUrn(), sessions.GetGapSize().AsDuration())
	case fn.GetUrn() == plan.URNFixedWindows && proto.Unmarshal(fn.GetPayload(), &fixed) == nil:
		return fmt.Sprintf("%s(size %v, offset %v)", fn.GetUrn(), fixed.GetSize().AsDuration(), fixed.GetOffset().AsTime().Sub(time.Unix(0, 0)))
	case fn.GetUrn() == plan.URNSlidingWindows && proto.Unmarshal(fn.GetPayload(), &sliding) == nil:
		return fmt.Sprintf("%s(size %v, period %v, offset %v)", fn.GetUrn(), sliding.GetSize().AsDuration(), sliding.GetPeriod().AsDuration(), sliding.GetOffset().AsTime().Sub(time.Unix(0, 0)))
	}
	sum := sha256.Sum256(fn.GetPayload())
	return fmt.Sprintf("%s[payload %s]", fn.GetUrn(), hex.EncodeToString(sum[:6]))
}

// byUniqueName indexes the transforms of comps by unique name.
func byUniqueName(comps *pipepb.Components) map[string]*pipepb.PTransform {
	out := make(map[string]*pipepb.PTransform, len(comps.GetTransforms()))
	for _, t := range comps.GetTransforms() {
		out[t.GetUniqueName()] = t
	}
	return out
}

// unstable are the parts of Go SDK unique names that an ordinary edit
// moves (FIELD-NOTES "Beam: names, and what survives a code change").
var unstable = []struct {
	re   *regexp.Regexp
	what string
}{
	{regexp.MustCompile(`'[0-9]+(/|$)`), "a 'N suffix (a name clash numbered in construction order: reusing the DoFn earlier in the same scope takes this name)"},
	{regexp.MustCompile(`\.func[0-9]+(\.|/|$)`), "a closure number (adding a closure earlier in the function renumbers it)"},
	{regexp.MustCompile(`\[.*\]`), "a generic function's name (every instance of it has this name)"},
}

// unstableName says why unique name n will not stay stable ("" if it
// will).
func unstableName(n string) string {
	var why []string
	for _, u := range unstable {
		if u.re.MatchString(n) {
			why = append(why, u.what)
		}
	}
	return strings.Join(why, "; ")
}
