package driver

import (
	"bufio"
	"encoding/json"
	"io"
	"sort"
	"strings"
)

// Event is one line of `go tool test2json` output.
type Event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

// TestResult is the outcome of one test or subtest.
type TestResult struct {
	Name    string
	Action  string // pass, fail, skip; "" if the test never finished (crash, timeout)
	Elapsed float64
	output  strings.Builder
}

// Output returns everything the test printed.
func (t *TestResult) Output() string { return t.output.String() }

// Status is the test's outcome for reports.
func (t *TestResult) Status() string {
	if t.Action == "" {
		return "did not finish"
	}
	return t.Action
}

// SuiteResult collects test2json events of one test binary run.
type SuiteResult struct {
	Tests     map[string]*TestResult
	order     []string
	PkgAction string // pass or fail for the binary as a whole; "" if none seen
	pkgOutput strings.Builder
}

// NewSuiteResult returns an empty result.
func NewSuiteResult() *SuiteResult { return &SuiteResult{Tests: map[string]*TestResult{}} }

// PkgOutput is the output not attributed to any test (TestMain, panics).
func (r *SuiteResult) PkgOutput() string { return r.pkgOutput.String() }

// Add records one event.
func (r *SuiteResult) Add(e Event) {
	if e.Test == "" {
		switch e.Action {
		case "output":
			r.pkgOutput.WriteString(e.Output)
		case "pass", "fail", "skip":
			r.PkgAction = e.Action
		}
		return
	}
	t := r.Tests[e.Test]
	if t == nil {
		t = &TestResult{Name: e.Test}
		r.Tests[e.Test] = t
		r.order = append(r.order, e.Test)
	}
	switch e.Action {
	case "output":
		t.output.WriteString(e.Output)
	case "pass", "fail", "skip":
		t.Action = e.Action
		t.Elapsed = e.Elapsed
	}
}

// Read decodes test2json events from rd until EOF, adding each and passing it
// to each (if not nil). Lines that are not JSON are recorded as package output.
func (r *SuiteResult) Read(rd io.Reader, each func(Event)) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			e = Event{Action: "output", Output: sc.Text() + "\n"}
		}
		r.Add(e)
		if each != nil {
			each(e)
		}
	}
	return sc.Err()
}

// Counted returns the tests that count, by outcome: every leaf test (one with
// no subtests), plus a parent test that failed or did not finish while none of
// its subtests failed (so a failure is never lost). A test that did not finish
// counts as failed.
func (r *SuiteResult) Counted() (passed, failed, skipped []*TestResult) {
	names := append([]string(nil), r.order...)
	sort.Strings(names)
	hasChild := map[string]bool{}
	for _, n := range names {
		if i := strings.LastIndex(n, "/"); i > 0 {
			for p := n[:i]; ; {
				hasChild[p] = true
				j := strings.LastIndex(p, "/")
				if j <= 0 {
					break
				}
				p = p[:j]
			}
		}
	}
	failedUnder := map[string]bool{} // parent names with a counted failure below
	markFailed := func(n string) {
		for i := strings.LastIndex(n, "/"); i > 0; i = strings.LastIndex(n, "/") {
			n = n[:i]
			failedUnder[n] = true
		}
	}
	// Leaves first, then parents deepest first, so failedUnder is complete.
	sort.SliceStable(names, func(i, j int) bool {
		return strings.Count(names[i], "/") > strings.Count(names[j], "/")
	})
	for _, n := range names {
		t := r.Tests[n]
		bad := t.Action == "fail" || t.Action == ""
		if hasChild[n] {
			if bad && !failedUnder[n] {
				failed = append(failed, t)
				markFailed(n)
			}
			continue
		}
		switch {
		case bad:
			failed = append(failed, t)
			markFailed(n)
		case t.Action == "skip":
			skipped = append(skipped, t)
		default:
			passed = append(passed, t)
		}
	}
	byName := func(s []*TestResult) {
		sort.Slice(s, func(i, j int) bool { return s[i].Name < s[j].Name })
	}
	byName(passed)
	byName(failed)
	byName(skipped)
	return passed, failed, skipped
}
