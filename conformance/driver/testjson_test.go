package driver

import (
	"strings"
	"testing"
)

func names(ts []*TestResult) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return strings.Join(s, ",")
}

func TestCounted(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Test":"TestA"}
{"Action":"output","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Test":"TestA","Elapsed":0.1}
{"Action":"run","Test":"TestB"}
{"Action":"run","Test":"TestB/one"}
{"Action":"pass","Test":"TestB/one"}
{"Action":"run","Test":"TestB/two"}
{"Action":"output","Test":"TestB/two","Output":"boom\n"}
{"Action":"fail","Test":"TestB/two"}
{"Action":"run","Test":"TestB/three"}
{"Action":"skip","Test":"TestB/three"}
{"Action":"fail","Test":"TestB"}
{"Action":"run","Test":"TestC"}
{"Action":"run","Test":"TestC/x"}
{"Action":"pass","Test":"TestC/x"}
{"Action":"fail","Test":"TestC"}
{"Action":"run","Test":"TestD"}
{"Action":"skip","Test":"TestD"}
{"Action":"run","Test":"TestE"}
{"Action":"run","Test":"TestE/a"}
{"Action":"run","Test":"TestE/a/b"}
{"Action":"output","Test":"TestE/a/b","Output":"panic: test timed out\n"}
not json at all
{"Action":"output","Output":"FAIL\n"}
{"Action":"fail","Elapsed":3}
`
	r := NewSuiteResult()
	n := 0
	if err := r.Read(strings.NewReader(in), func(Event) { n++ }); err != nil {
		t.Fatal(err)
	}
	if n != 26 {
		t.Errorf("saw %d events", n)
	}
	p, f, s := r.Counted()
	if got := names(p); got != "TestA,TestB/one,TestC/x" {
		t.Errorf("passed %s", got)
	}
	// TestC failed after its only subtest passed: it counts itself.
	// TestE/a/b never finished: counted once, not its parents.
	if got := names(f); got != "TestB/two,TestC,TestE/a/b" {
		t.Errorf("failed %s", got)
	}
	if got := names(s); got != "TestB/three,TestD" {
		t.Errorf("skipped %s", got)
	}
	if r.PkgAction != "fail" || !strings.Contains(r.PkgOutput(), "not json at all") {
		t.Errorf("package action %q output %q", r.PkgAction, r.PkgOutput())
	}
	if r.Tests["TestB/two"].Output() != "boom\n" {
		t.Errorf("output %q", r.Tests["TestB/two"].Output())
	}
}
