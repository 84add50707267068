package rewrite

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/weir-runner/weir/savepoint"
)

// owner is one owner of data files of the source savepoint (a stateful
// transform, GroupByKey, side input reader or source) that the new
// savepoint keeps, and what becomes of its files.
type owner struct {
	sec      savepoint.Section
	old      string           // its name in the source
	name     string           // and in the new savepoint
	files    []savepoint.File // its files in the source
	dropIDs  map[string]bool  // states and timer families dropped
	newFiles *[]savepoint.File
}

// plan is the new savepoint's metadata (without files, job, ID and
// figures) and the owners whose records it takes.
type plan struct {
	meta    *savepoint.Metadata
	owners  []owner
	dropped []string // what the drops removed, for the report
}

// names lists every name of a savepoint by what it is, for matching and
// for messages.
type names struct {
	bySection map[savepoint.Section][]string
	fired     []string
}

func namesOf(m *savepoint.Metadata) names {
	n := names{bySection: map[savepoint.Section][]string{}, fired: m.FiredImpulses}
	for _, t := range m.Transforms {
		n.bySection[savepoint.SectionTransforms] = append(n.bySection[savepoint.SectionTransforms], t.UniqueName)
	}
	for _, g := range m.Groups {
		n.bySection[savepoint.SectionGroups] = append(n.bySection[savepoint.SectionGroups], g.UniqueName)
	}
	for _, s := range m.SideInputs {
		n.bySection[savepoint.SectionSideInputs] = append(n.bySection[savepoint.SectionSideInputs], s.UniqueName)
	}
	for _, s := range m.Sources {
		n.bySection[savepoint.SectionSources] = append(n.bySection[savepoint.SectionSources], s.UniqueName)
	}
	return n
}

// under reports whether any name is prefix or under it.
func (n names) under(prefix string) bool {
	for _, list := range n.bySection {
		if slices.ContainsFunc(list, func(s string) bool { return savepoint.NameUnder(s, prefix) }) {
			return true
		}
	}
	return slices.ContainsFunc(n.fired, func(s string) bool { return savepoint.NameUnder(s, prefix) })
}

// String lists the names, for an error that says what there is.
func (n names) String() string {
	var parts []string
	for _, sec := range []savepoint.Section{savepoint.SectionTransforms, savepoint.SectionGroups, savepoint.SectionSideInputs, savepoint.SectionSources} {
		if len(n.bySection[sec]) > 0 {
			parts = append(parts, fmt.Sprintf("%s %q", sec, n.bySection[sec]))
		}
	}
	if len(n.fired) > 0 {
		parts = append(parts, fmt.Sprintf("fired_impulses %q", n.fired))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// makePlan resolves o's drops and renames against the source's metadata m.
func makePlan(m *savepoint.Metadata, o *Options) (*plan, error) {
	all := namesOf(m)
	var prefixes []string                   // owners dropped whole
	dropIDs := map[string]map[string]bool{} // transform → state/timer IDs
	p := &plan{meta: &savepoint.Metadata{}}
	for _, d := range o.Drop {
		if all.under(d) {
			prefixes = append(prefixes, d)
			continue
		}
		name, id, err := stateToDrop(m, d)
		if err != nil {
			return nil, fmt.Errorf("drop %q: %w; the savepoint holds %s", d, err, all)
		}
		if dropIDs[name] == nil {
			dropIDs[name] = map[string]bool{}
		}
		dropIDs[name][id] = true
	}
	for _, old := range slices.Sorted(maps.Keys(o.Rename)) {
		if !all.under(old) {
			return nil, fmt.Errorf("rename %q=%q: nothing in the savepoint is named %q or under it; the savepoint holds %s", old, o.Rename[old], old, all)
		}
	}
	dropped := func(n string) bool {
		return slices.ContainsFunc(prefixes, func(pre string) bool { return savepoint.NameUnder(n, pre) })
	}
	nm := p.meta
	transforms := make([]savepoint.Transform, len(m.Transforms))
	for i, t := range m.Transforms {
		t.States = slices.DeleteFunc(slices.Clone(t.States), func(s savepoint.StateSpec) bool { return dropIDs[t.UniqueName][s.ID] })
		t.Timers = slices.DeleteFunc(slices.Clone(t.Timers), func(f savepoint.TimerFamily) bool { return dropIDs[t.UniqueName][f.ID] })
		for _, id := range slices.Sorted(maps.Keys(dropIDs[t.UniqueName])) {
			p.dropped = append(p.dropped, fmt.Sprintf("state or timer family %q of transform %q", id, t.UniqueName))
		}
		transforms[i] = t
	}
	var err error
	if nm.Transforms, err = keepSection(p, o, dropped, dropIDs, savepoint.SectionTransforms, transforms,
		func(t *savepoint.Transform) (*string, *[]savepoint.File) { return &t.UniqueName, &t.Files }); err != nil {
		return nil, err
	}
	if nm.Groups, err = keepSection(p, o, dropped, dropIDs, savepoint.SectionGroups, m.Groups,
		func(g *savepoint.Group) (*string, *[]savepoint.File) { return &g.UniqueName, &g.Files }); err != nil {
		return nil, err
	}
	if nm.SideInputs, err = keepSection(p, o, dropped, dropIDs, savepoint.SectionSideInputs, m.SideInputs,
		func(s *savepoint.SideInputs) (*string, *[]savepoint.File) { return &s.UniqueName, &s.Files }); err != nil {
		return nil, err
	}
	if nm.Sources, err = keepSection(p, o, dropped, dropIDs, savepoint.SectionSources, m.Sources,
		func(s *savepoint.Source) (*string, *[]savepoint.File) { return &s.UniqueName, &s.Files }); err != nil {
		return nil, err
	}
	fired := map[string]string{}
	for _, n := range m.FiredImpulses {
		if dropped(n) {
			p.dropped = append(p.dropped, fmt.Sprintf("fired Impulse %q", n))
			continue
		}
		name, _ := savepoint.Rename(o.Rename, n)
		if other, ok := fired[name]; ok {
			return nil, fmt.Errorf("rename: fired Impulses %q and %q would both be named %q; rename one of them to another name", other, n, name)
		}
		fired[name] = n
		nm.FiredImpulses = append(nm.FiredImpulses, name)
	}
	return p, nil
}

// keepSection returns the owners of one section (in) that the plan
// keeps, renamed and without files, and adds them to p.owners; ref gives
// an owner's name and files.
func keepSection[T any](p *plan, o *Options, dropped func(string) bool, dropIDs map[string]map[string]bool, sec savepoint.Section, in []T, ref func(*T) (*string, *[]savepoint.File)) ([]T, error) {
	out := make([]T, 0, len(in))
	var kept []owner
	byName := map[string]string{} // new name → old
	for _, v := range in {
		name, files := ref(&v)
		old := *name
		if dropped(old) {
			p.dropped = append(p.dropped, fmt.Sprintf("%s %q", sec, old))
			continue
		}
		renamed, _ := savepoint.Rename(o.Rename, old) // Options.check refuses "" values
		if other, ok := byName[renamed]; ok {
			return nil, fmt.Errorf("rename: %s %q and %q would both be named %q; rename one of them to another name", sec, other, old, renamed)
		}
		byName[renamed] = old
		kept = append(kept, owner{sec: sec, old: old, name: renamed, files: *files, dropIDs: dropIDs[old]})
		*name, *files = renamed, nil
		out = append(out, v)
	}
	for i := range kept {
		_, kept[i].newFiles = ref(&out[i])
	}
	p.owners = append(p.owners, kept...)
	return out, nil
}

// stateToDrop splits d into a stateful transform of m and one of its
// state or timer family IDs.
func stateToDrop(m *savepoint.Metadata, d string) (transform, id string, err error) {
	i := strings.LastIndexByte(d, '/')
	if i <= 0 {
		return "", "", fmt.Errorf("nothing in the savepoint is named %q or under it", d)
	}
	transform, id = d[:i], d[i+1:]
	j := slices.IndexFunc(m.Transforms, func(t savepoint.Transform) bool { return t.UniqueName == transform })
	if j < 0 {
		return "", "", fmt.Errorf("nothing in the savepoint is named %q or under it, and it has no stateful transform %q", d, transform)
	}
	t := m.Transforms[j]
	if !slices.ContainsFunc(t.States, func(s savepoint.StateSpec) bool { return s.ID == id }) &&
		!slices.ContainsFunc(t.Timers, func(f savepoint.TimerFamily) bool { return f.ID == id }) {
		var ids []string
		for _, s := range t.States {
			ids = append(ids, s.ID)
		}
		for _, f := range t.Timers {
			ids = append(ids, f.ID)
		}
		return "", "", fmt.Errorf("transform %q has no state or timer family %q (it has %q)", transform, id, ids)
	}
	return transform, id, nil
}
