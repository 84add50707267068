package conformance

import (
	_ "embed"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// SkipEntry is one line of skiplist.txt: a top-level test of a suite that the
// driver does not run, and why.
type SkipEntry struct {
	Suite  string
	Test   string
	Reason string
	Line   int
}

//go:embed skiplist.txt
var skipListText string

// SkipListText is the content of skiplist.txt as compiled into this package.
func SkipListText() string { return skipListText }

var testName = regexp.MustCompile(`^Test[A-Za-z0-9_]*$`)

// ParseSkipList parses skip list text. Each non-blank line that is not a
// comment reads `suite TestName  # reason`: the suite must be one of Suites,
// the test a literal top-level test name (no patterns), and the reason is
// required. Lines starting with # are comments.
func ParseSkipList(text string) ([]SkipEntry, error) {
	var out []SkipEntry
	seen := map[string]int{}
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		body, reason, ok := strings.Cut(line, "#")
		reason = strings.TrimSpace(reason)
		if !ok || reason == "" {
			return nil, fmt.Errorf("skiplist line %d: %q: missing `# reason`", n, line)
		}
		f := strings.Fields(body)
		if len(f) != 2 {
			return nil, fmt.Errorf("skiplist line %d: %q: want `suite TestName  # reason`", n, line)
		}
		if _, ok := SuiteByName(f[0]); !ok {
			return nil, fmt.Errorf("skiplist line %d: unknown suite %q", n, f[0])
		}
		if !testName.MatchString(f[1]) {
			return nil, fmt.Errorf("skiplist line %d: %q is not a literal top-level test name", n, f[1])
		}
		key := f[0] + " " + f[1]
		if prev, dup := seen[key]; dup {
			return nil, fmt.Errorf("skiplist line %d: %s already listed on line %d", n, key, prev)
		}
		seen[key] = n
		out = append(out, SkipEntry{Suite: f[0], Test: f[1], Reason: reason, Line: n})
	}
	return out, nil
}

// LoadSkipList parses the embedded skiplist.txt.
func LoadSkipList() ([]SkipEntry, error) { return ParseSkipList(skipListText) }

// SkipPattern returns a -test.skip regexp matching exactly the given
// top-level tests, or "" if there are none.
func SkipPattern(tests []string) string {
	if len(tests) == 0 {
		return ""
	}
	q := make([]string, len(tests))
	for i, t := range tests {
		q[i] = regexp.QuoteMeta(t)
	}
	sort.Strings(q)
	return "^(" + strings.Join(q, "|") + ")$"
}

// ForSuite returns the entries of one suite, keyed by test name.
func ForSuite(entries []SkipEntry, suite string) map[string]SkipEntry {
	m := map[string]SkipEntry{}
	for _, e := range entries {
		if e.Suite == suite {
			m[e.Test] = e
		}
	}
	return m
}
