package engine

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	pipepb "github.com/apache/beam/sdks/v2/go/pkg/beam/model/pipeline_v1"
	"github.com/weir-runner/weir/runner/wire"
	"github.com/weir-runner/weir/savepoint"
)

// Whether a savepoint fits a changed pipeline, decided before the job
// starts: planRestore, a pure function of the savepoint's metadata and
// pipeline proto, the new pipeline's declarations and proto, the name
// mapping and --allow_non_restored_state, says for each stateful
// transform, GroupByKey, side input reader and source of the savepoint
// (and each state and timer family) where its state goes: restored under
// its name or a mapped one, migrated (a Go struct's row schema gained or
// lost fields), dropped, or refused with what differs and the fix. A
// restore refuses the job if anything is refused (RestorePlan.Err); a dry
// run (--savepoint_plan_only) prints the plan instead. Coders, DoFns and
// windowing are compared by what they are (savepoint_compat_names.go), not
// by ID.

// PlanAction is what a restore does with one piece of a savepoint.
type PlanAction string

// The actions of a restore plan.
const (
	PlanRestore PlanAction = "restored"     // under the same name
	PlanRename  PlanAction = "renamed"      // under the name --transform_name_mapping gives
	PlanMigrate PlanAction = "migrated"     // re-encoded for a changed row schema
	PlanDrop    PlanAction = "dropped"      // not restored, allowed
	PlanRefuse  PlanAction = "refused"      // the job does not start
	PlanEmpty   PlanAction = "starts empty" // in the pipeline, not in the savepoint
)

// PlanStep is where one piece of a savepoint's state goes.
type PlanStep struct {
	What   string // transform, state, timer, GroupByKey, side inputs, side input, source
	Name   string // its owner's unique name in the savepoint (the pipeline's for PlanEmpty)
	ID     string // a state, timer family or side input ID ("" for an owner)
	To     string // its owner's unique name in the pipeline
	Action PlanAction
	Why    string // what differs (refused, dropped, migrated)
	Fix    string // how to make it restore (refused)
	// noPlace marks a refusal for want of a target, which
	// --allow_non_restored_state turns into a drop.
	noPlace bool
}

// RestorePlan says where a savepoint's state goes in a pipeline.
type RestorePlan struct {
	Savepoint string
	Steps     []PlanStep
	// Warnings name the pipeline's unique names that will not stay
	// stable, and why.
	Warnings []string
	// migrations are the row migrations by the pipeline's (transform
	// name, state ID).
	migrations map[[2]string]*wire.RowMigration
	// dropped are the (pipeline's transform name, timer family) whose
	// timers are not restored.
	droppedTimers map[[2]string]bool
	// Native is why a native savepoint does not go into the job as it is
	// ("" if it does, or the savepoint is canonical: checkNative).
	Native string
}

// compatInput is what planRestore compares.
type compatInput struct {
	where              string // the savepoint, for messages
	old, now           *savepoint.Metadata
	oldComps, newComps *pipepb.Components
	// rename maps a savepoint unique name to the pipeline's (false: the
	// mapping drops it).
	rename func(string) (string, bool)
	allow  bool
}

// The fixes the refusals suggest.
const (
	fixNoPlace = "keep the transform (and its unique name), map its name to the new one with --transform_name_mapping, or pass --allow_non_restored_state to drop it"
	fixDoFn    = "the Go SDK numbers clashing names ('1) and closures (func1) in construction order, so an edit can give a name to another DoFn: name each stateful transform with beam.Scope(\"name\"), map the old names to the new with --transform_name_mapping, or drop the old state with --transform_name_mapping '{\"<old name>\":\"\"}'"
	fixCoder   = "keep the old type (a new state ID starts empty: add one for the new type), or drop the state with --transform_name_mapping; only Go structs (row coders) that gained or lost fields are migrated"
	fixWindow  = "keep the windowing of the transform's input, or drop its state with --transform_name_mapping '{\"<name>\":\"\"}'"
)

// planRestore plans the restore of in.old into the pipeline in.now.
func planRestore(in compatInput) *RestorePlan {
	p := &RestorePlan{Savepoint: in.where, migrations: map[[2]string]*wire.RowMigration{}, droppedTimers: map[[2]string]bool{}}
	c := &compat{compatInput: in, p: p, oldT: byUniqueName(in.oldComps), newT: byUniqueName(in.newComps), targeted: map[[2]string]bool{}}
	planOwners(c, "transform", in.old.Transforms, in.now.Transforms,
		func(t *savepoint.Transform) (string, int) { return t.UniqueName, len(t.Files) }, c.transform)
	planOwners(c, "GroupByKey", in.old.Groups, in.now.Groups,
		func(g *savepoint.Group) (string, int) { return g.UniqueName, len(g.Files) }, c.group)
	planOwners(c, "side inputs", in.old.SideInputs, in.now.SideInputs,
		func(s *savepoint.SideInputs) (string, int) { return s.UniqueName, len(s.Files) }, c.sideInputs)
	planOwners(c, "source", in.old.Sources, in.now.Sources,
		func(s *savepoint.Source) (string, int) { return s.UniqueName, len(s.Files) }, c.source)
	// What the pipeline has that the savepoint does not, and names that
	// will not map onto the next version.
	for _, d := range c.declared {
		what, n := d[0], d[1]
		if !c.targeted[d] {
			p.Steps = append(p.Steps, PlanStep{What: what, Name: n, To: n, Action: PlanEmpty})
		}
		if why := unstableName(n); why != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s %q: its unique name has %s, so a later version of the pipeline may give it to another transform or change it: give it a stable name with beam.Scope(\"name\") (or a named transform)", what, n, why))
		}
	}
	slices.SortStableFunc(p.Steps, func(a, b PlanStep) int {
		// By owner, the owner before its states, timers and side inputs.
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(min(len(a.ID), 1), min(len(b.ID), 1)),
			strings.Compare(a.What, b.What), strings.Compare(a.ID, b.ID))
	})
	slices.Sort(p.Warnings)
	return p
}

// planOwners plans the owners of one section (what): each of the
// savepoint's (old) matched by its mapped name to the pipeline's (now)
// and, if found, checked by check. id gives an owner's unique name and
// its count of data files.
func planOwners[T any](c *compat, what string, old, now []T, id func(*T) (string, int), check func(o, n *T, to string)) {
	byName := map[string]*T{}
	for i := range now {
		n, _ := id(&now[i])
		byName[n] = &now[i]
		c.declared = append(c.declared, [2]string{what, n})
	}
	for i := range old {
		n, files := id(&old[i])
		// A native savepoint lists no data files: any owner may hold state.
		if to, ok := c.owner(what, n, files > 0 || c.old.IsNative(), byName[c.to(n)] != nil); ok {
			check(&old[i], byName[to], to)
		}
	}
}

// compat is planRestore's state.
type compat struct {
	compatInput
	p          *RestorePlan
	oldT, newT map[string]*pipepb.PTransform
	targeted   map[[2]string]bool // (what, the pipeline's name) the savepoint's state goes to
	declared   [][2]string        // (what, unique name) of the pipeline's owners
}

// to is the pipeline's name for savepoint name n ("" if dropped).
func (c *compat) to(n string) string {
	to, ok := c.rename(n)
	if !ok {
		return ""
	}
	return to
}

// owner plans an owner of the savepoint (what, name n; hasState if it
// has data files; found if the pipeline has an owner of its mapped name)
// and returns its name in the pipeline and whether to look further.
func (c *compat) owner(what, n string, hasState, found bool) (string, bool) {
	to, ok := c.rename(n)
	step := PlanStep{What: what, Name: n, To: to}
	switch {
	case !ok:
		step.To, step.Action, step.Why = "", PlanDrop, "--transform_name_mapping maps it to \"\""
	case !found && !hasState:
		step.Action, step.Why = PlanDrop, "not in the pipeline; it held no state"
	case !found:
		c.noPlace(step, "not in the pipeline")
		return "", false
	default:
		c.targeted[[2]string{what, to}] = true
		step.Action = PlanRestore
		if to != n {
			step.Action = PlanRename
		}
	}
	c.p.Steps = append(c.p.Steps, step)
	return to, ok && found
}

// noPlace adds step as refused for want of a target, or dropped if that
// is allowed.
func (c *compat) noPlace(step PlanStep, why string) {
	step.Why = why
	if c.allow {
		step.Action = PlanDrop
		step.Why += " (--allow_non_restored_state)"
	} else {
		step.Action, step.Fix, step.noPlace = PlanRefuse, fixNoPlace, true
	}
	c.p.Steps = append(c.p.Steps, step)
}

// refuse adds a refusal of (what, name, id), in place of the step that
// restored it if there is one (an owner's).
func (c *compat) refuse(what, name, id, to, why, fix string) {
	step := PlanStep{What: what, Name: name, ID: id, To: to, Action: PlanRefuse, Why: why, Fix: fix}
	for i := len(c.p.Steps) - 1; i >= 0; i-- {
		if s := &c.p.Steps[i]; s.What == what && s.Name == name && s.ID == id {
			*s = step
			return
		}
	}
	c.p.Steps = append(c.p.Steps, step)
}

// sameCoder compares two coders by tree and, if they differ, refuses
// (what, name, id) naming both.
func (c *compat) sameCoder(role, oldID, newID string, what, name, id, to string) bool {
	if oldID == "" && newID == "" {
		return true // neither has one (a set's values, a bag's user keys)
	}
	o, n := coderTree(c.oldComps.GetCoders(), oldID), coderTree(c.newComps.GetCoders(), newID)
	if o == n {
		return true
	}
	fix := fixCoder
	if what != "state" {
		fix = fmt.Sprintf("keep the %s type, or drop the state of %q with --transform_name_mapping '{\"%s\":\"\"}'", role, name, name)
	}
	c.refuse(what, name, id, to, fmt.Sprintf("its %s coder changed from %s to %s", role, o, n), fix)
	return false
}

// transform plans a stateful transform's states and timers.
func (c *compat) transform(t, nt *savepoint.Transform, to string) {
	ot, nT := c.oldT[t.UniqueName], c.newT[to]
	if ot != nil && nT != nil {
		ou, on := doFnIdentity(ot)
		nu, nn := doFnIdentity(nT)
		if ou != nu || (on != "" && nn != "" && on != nn) {
			c.refuse("transform", t.UniqueName, "", to, fmt.Sprintf("its DoFn changed from %s to %s", strings.TrimSpace(ou+" "+on), strings.TrimSpace(nu+" "+nn)), fixDoFn)
			return
		}
		if o, n := windowFn(c.oldComps, mainInput(ot)), windowFn(c.newComps, mainInput(nT)); o != n {
			c.refuse("transform", t.UniqueName, "", to, fmt.Sprintf("the window fn of its input changed from %s to %s", o, n), fixWindow)
			return
		}
	}
	// Key and window coders are the same for every state and timer of a
	// transform: compare them once.
	ok, nk := firstCoders(*t), firstCoders(*nt)
	if ok[0] != "" && nk[0] != "" && (!c.sameCoder("key", ok[0], nk[0], "transform", t.UniqueName, "", to) ||
		!c.sameCoder("window", ok[1], nk[1], "transform", t.UniqueName, "", to)) {
		return
	}
	states := map[string]savepoint.StateSpec{}
	for _, s := range nt.States {
		states[s.ID] = s
	}
	for _, s := range t.States {
		ns, found := states[s.ID]
		step := PlanStep{What: "state", Name: t.UniqueName, ID: s.ID, To: to, Action: PlanRestore}
		switch {
		case !found:
			c.noPlace(step, "the transform has no state of this ID")
		case s.Kind != ns.Kind:
			c.refuse("state", t.UniqueName, s.ID, to, fmt.Sprintf("it was %s state, now %s", s.Kind, ns.Kind), fixCoder)
		case c.sameCoder("user key", s.UserKeyCoder, ns.UserKeyCoder, "state", t.UniqueName, s.ID, to) && c.valueCoder(s, ns, &step):
			c.p.Steps = append(c.p.Steps, step)
		}
	}
	timers := map[string]savepoint.TimerFamily{}
	for _, f := range nt.Timers {
		timers[f.ID] = f
	}
	for _, f := range t.Timers {
		nf, found := timers[f.ID]
		step := PlanStep{What: "timer", Name: t.UniqueName, ID: f.ID, To: to, Action: PlanRestore}
		switch {
		case !found:
			c.p.droppedTimers[[2]string{to, f.ID}] = true
			c.noPlace(step, "the transform has no timer family of this ID")
		case f.Domain != nf.Domain:
			c.refuse("timer", t.UniqueName, f.ID, to, fmt.Sprintf("its time domain changed from %s to %s", f.Domain, nf.Domain), "keep the time domain, or use a new timer family ID")
		default:
			c.p.Steps = append(c.p.Steps, step)
		}
	}
}

// firstCoders are the key and window coders of t's first state or timer.
func firstCoders(t savepoint.Transform) [2]string {
	for _, s := range t.States {
		return [2]string{s.KeyCoder, s.WindowCoder}
	}
	for _, f := range t.Timers {
		return [2]string{f.KeyCoder, f.WindowCoder}
	}
	return [2]string{}
}

// valueCoder compares the value coders of state s and its new version
// ns: equal, or rows whose schemas gained or lost fields (step becomes a
// migration), or refused. It reports whether the state restores.
func (c *compat) valueCoder(s, ns savepoint.StateSpec, step *PlanStep) bool {
	if s.ValueCoder == "" && ns.ValueCoder == "" {
		return true
	}
	o, n := coderTree(c.oldComps.GetCoders(), s.ValueCoder), coderTree(c.newComps.GetCoders(), ns.ValueCoder)
	if o == n {
		return true
	}
	why := fmt.Sprintf("its value coder changed from %s to %s", o, n)
	os, nschema := rowSchema(c.oldComps.GetCoders(), s.ValueCoder), rowSchema(c.newComps.GetCoders(), ns.ValueCoder)
	if os == nil || nschema == nil {
		c.refuse("state", step.Name, s.ID, step.To, why, fixCoder)
		return false
	}
	m, err := wire.NewRowMigration(os, nschema)
	if err != nil {
		c.refuse("state", step.Name, s.ID, step.To, fmt.Sprintf("%s: %v", why, err), fixCoder)
		return false
	}
	step.Action = PlanMigrate
	step.Why = fmt.Sprintf("row schema %s to %s: fields added %v, removed %v (by name; new fields start at their zero values)",
		wire.SchemaString(os), wire.SchemaString(nschema), m.Added, m.Removed)
	c.p.migrations[[2]string{step.To, s.ID}] = m
	return true
}

// group plans a GroupByKey's buffers and trigger state.
func (c *compat) group(g, ng *savepoint.Group, to string) {
	if ot, nt := c.oldT[g.UniqueName], c.newT[to]; ot != nil && nt != nil {
		if o, n := windowFn(c.oldComps, firstInput(ot)), windowFn(c.newComps, firstInput(nt)); o != n {
			c.refuse("GroupByKey", g.UniqueName, "", to, fmt.Sprintf("the window fn of its input changed from %s to %s", o, n), fixWindow)
			return
		}
	}
	_ = c.sameCoder("key", g.KeyCoder, ng.KeyCoder, "GroupByKey", g.UniqueName, "", to) &&
		c.sameCoder("value", g.ValueCoder, ng.ValueCoder, "GroupByKey", g.UniqueName, "", to) &&
		c.sameCoder("window", g.WindowCoder, ng.WindowCoder, "GroupByKey", g.UniqueName, "", to)
}

// firstInput is the input PCollection of a one-input transform.
func firstInput(t *pipepb.PTransform) string {
	for _, pc := range t.GetInputs() {
		return pc
	}
	return ""
}

// sideInputs plans the side inputs of a transform that reads them and
// its parked main input.
func (c *compat) sideInputs(s, ns *savepoint.SideInputs, to string) {
	if s.InputCoder != "" && ns.InputCoder != "" && !c.sameCoder("main input", s.InputCoder, ns.InputCoder, "side inputs", s.UniqueName, "", to) {
		return
	}
	inputs := map[string]savepoint.SideInputSpec{}
	for _, in := range ns.Inputs {
		inputs[in.ID] = in
	}
	for _, in := range s.Inputs {
		n, found := inputs[in.ID]
		step := PlanStep{What: "side input", Name: s.UniqueName, ID: in.ID, To: to, Action: PlanRestore}
		switch {
		case !found:
			c.noPlace(step, "the transform has no side input of this local name")
		case in.Kind != n.Kind:
			c.refuse("side input", s.UniqueName, in.ID, to, fmt.Sprintf("it was read as %s, now as %s", in.Kind, n.Kind),
				fmt.Sprintf("read it as before, or drop the state of %q with --transform_name_mapping '{\"%s\":\"\"}'", s.UniqueName, s.UniqueName))
		case (in.KeyCoder == "" || c.sameCoder("key", in.KeyCoder, n.KeyCoder, "side input", s.UniqueName, in.ID, to)) &&
			c.sameCoder("value", in.ValueCoder, n.ValueCoder, "side input", s.UniqueName, in.ID, to) &&
			c.sameCoder("window", in.WindowCoder, n.WindowCoder, "side input", s.UniqueName, in.ID, to):
			c.p.Steps = append(c.p.Steps, step)
		}
	}
}

// source plans a source's positions.
func (c *compat) source(s, ns *savepoint.Source, to string) {
	if s.RestrictionCoder != "" && ns.RestrictionCoder != "" {
		c.sameCoder("restriction", s.RestrictionCoder, ns.RestrictionCoder, "source", s.UniqueName, "", to)
	}
}

// refused reports whether the plan refuses the job.
func (p *RestorePlan) refused() bool {
	if p.Native != "" {
		return true
	}
	for _, s := range p.Steps {
		if s.Action == PlanRefuse {
			return true
		}
	}
	return false
}

// Err is the refusal of the job the plan describes, nil if it restores.
func (p *RestorePlan) Err() error {
	var noPlace, other []string
	for _, s := range p.Steps {
		switch {
		case s.Action != PlanRefuse:
		case s.noPlace && s.ID == "":
			noPlace = append(noPlace, fmt.Sprintf("%s %q", sectionOf(s.What), s.Name))
		case s.noPlace:
			noPlace = append(noPlace, fmt.Sprintf("%s %q of %q", s.What, s.ID, s.To))
		default:
			other = append(other, fmt.Sprintf("%s: %s; %s", s.describe(), s.Why, s.Fix))
		}
	}
	var errs []error
	if len(noPlace) > 0 {
		errs = append(errs, fmt.Errorf("savepoint %s holds state the pipeline has no place for: %v; keep those transforms (and their unique names), map their names to the new ones with --transform_name_mapping, or pass --allow_non_restored_state to drop it", p.Savepoint, noPlace))
	}
	if len(other) > 0 {
		errs = append(errs, fmt.Errorf("savepoint %s does not fit the pipeline:\n  %s", p.Savepoint, strings.Join(other, "\n  ")))
	}
	return errors.Join(errs...)
}

// sectionOf names the savepoint section of an owner kind, as
// portable.Owner prints it.
func sectionOf(what string) savepoint.Section {
	switch what {
	case "GroupByKey":
		return savepoint.SectionGroups
	case "side inputs":
		return savepoint.SectionSideInputs
	case "source":
		return savepoint.SectionSources
	}
	return savepoint.SectionTransforms
}

// describe names what a step is about.
func (s PlanStep) describe() string {
	d := fmt.Sprintf("%s %q", s.What, s.Name)
	if s.ID != "" {
		d = fmt.Sprintf("%s %q of %q", s.What, s.ID, s.Name)
	}
	if s.To != "" && s.To != s.Name {
		d += fmt.Sprintf(" (now %q)", s.To)
	}
	return d
}

// String is the plan as a user reads it: a line per step, then the
// warnings and the outcome.
func (p *RestorePlan) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "restore plan for savepoint %s:\n", p.Savepoint)
	for _, s := range p.Steps {
		fmt.Fprintf(&sb, "  %s: %s", s.describe(), s.Action)
		if s.Why != "" {
			fmt.Fprintf(&sb, ": %s", s.Why)
		}
		if s.Fix != "" {
			fmt.Fprintf(&sb, "; fix: %s", s.Fix)
		}
		sb.WriteByte('\n')
	}
	for _, w := range p.Warnings {
		fmt.Fprintf(&sb, "warning: %s\n", w)
	}
	if p.Native != "" {
		fmt.Fprintf(&sb, "refused: %s\n", p.Native)
	}
	if p.refused() {
		sb.WriteString("the job would be refused\n")
	} else {
		sb.WriteString("the job would start from the savepoint\n")
	}
	return sb.String()
}
