package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// maxSkipEntries caps the skip list: it may only shrink. Lower this number when
// you remove entries. Raising it needs a reason in the same change.
const maxSkipEntries = 1

// mustRun are batch tests weir must always run: none may be skip-listed.
var mustRun = map[string][]string{
	"primitives": {
		// ParDo, side inputs, bundle finalization.
		"TestParDoMultiOutput", "TestParDoSideInput", "TestParDoKVSideInput",
		"TestParDoMultiMapSideInput", "TestParDoPipelineOptions", "TestParDoBundleFinalizer",
		// CoGBK, reshuffle, short reads.
		"TestCoGBK", "TestReshuffle", "TestReshuffleKV", "TestGBKShortRead",
		// Flatten.
		"TestFlatten", "TestFlattenDup",
		// Windowing.
		"TestWindowSums_Lifted", "TestWindowSums_GBK", "TestValidateWindowedSideInputs",
	},
}

func TestSkipListParses(t *testing.T) {
	entries, err := LoadSkipList()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("empty skip list: TestOomParDo at least must be listed")
	}
	if len(entries) > maxSkipEntries {
		t.Errorf("skip list has %d entries, more than the cap %d: the list may only shrink", len(entries), maxSkipEntries)
	}
	if _, ok := ForSuite(entries, "primitives")["TestOomParDo"]; !ok {
		t.Error("primitives TestOomParDo (Dataflow-only) must be skip-listed")
	}
}

func TestSkipListSparesMustRun(t *testing.T) {
	entries, err := LoadSkipList()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		for _, name := range mustRun[e.Suite] {
			if e.Test == name {
				t.Errorf("skiplist.txt line %d: %s %s must run, it may not be skipped (%s)", e.Line, e.Suite, e.Test, e.Reason)
			}
		}
	}
}

func TestSuitesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Suites {
		if seen[s.Name] {
			t.Errorf("duplicate suite %q", s.Name)
		}
		seen[s.Name] = true
		if !strings.HasSuffix(s.Pkg, "/"+s.Name) {
			t.Errorf("suite %q: name must be the last element of %s (go test -c names binaries so)", s.Name, s.Pkg)
		}
		if s.Timeout <= 0 {
			t.Errorf("suite %q: no timeout", s.Name)
		}
	}
}

func TestParseSkipListErrors(t *testing.T) {
	for _, bad := range []string{
		"primitives TestFoo",                             // no reason
		"primitives TestFoo #",                           // empty reason
		"nosuchsuite TestFoo # r",                        // unknown suite
		"primitives TestFoo.* # r",                       // pattern
		"primitives TestFoo/sub # r",                     // subtest
		"primitives # r",                                 // missing test
		"primitives TestA # r\nprimitives TestA # again", // duplicate
	} {
		if _, err := ParseSkipList(bad); err == nil {
			t.Errorf("ParseSkipList(%q): no error", bad)
		}
	}
	got, err := ParseSkipList("# c\n\n  primitives TestA   # why # not\n")
	if err != nil || len(got) != 1 || got[0].Test != "TestA" || got[0].Reason != "why # not" || got[0].Line != 3 {
		t.Errorf("got %+v, %v", got, err)
	}
}

func TestSkipPattern(t *testing.T) {
	p := SkipPattern([]string{"TestB", "TestA"})
	if p != "^(TestA|TestB)$" {
		t.Fatalf("pattern %q", p)
	}
	re := regexp.MustCompile(p)
	if !re.MatchString("TestA") || re.MatchString("TestAB") || re.MatchString("XTestA") {
		t.Errorf("pattern %q matches wrongly", p)
	}
	if SkipPattern(nil) != "" {
		t.Error("empty pattern for no tests")
	}
}

// TestSkipListNamesExist checks each entry names a test that exists in the
// Beam sources this module uses, so stale entries are noticed after upgrades.
func TestSkipListNamesExist(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", "github.com/apache/beam/sdks/v2").Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("Beam module source not available: %v", err)
	}
	entries, err := LoadSkipList()
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]map[string]bool{}
	for _, e := range entries {
		if defined[e.Suite] == nil {
			s, _ := SuiteByName(e.Suite)
			pkgDir := filepath.Join(dir, strings.TrimPrefix(s.Pkg, "github.com/apache/beam/sdks/v2/"))
			files, _ := filepath.Glob(filepath.Join(pkgDir, "*_test.go"))
			defined[e.Suite] = map[string]bool{}
			re := regexp.MustCompile(`(?m)^func (Test\w*)\(t \*testing\.T\)`)
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range re.FindAllStringSubmatch(string(b), -1) {
					defined[e.Suite][m[1]] = true
				}
			}
		}
		if !defined[e.Suite][e.Test] {
			t.Errorf("skiplist.txt line %d: %s has no test %s: remove the entry", e.Line, e.Suite, e.Test)
		}
	}
}
