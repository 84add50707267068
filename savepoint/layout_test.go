package savepoint

import (
	"strings"
	"testing"
)

func TestDirName(t *testing.T) {
	for _, tc := range []struct {
		job, id, want string
	}{
		{"wordcount", "1", "savepoint-wordcount-1"},
		{"my-job.v2", "20260101T120000_3", "savepoint-my-job.v2-20260101T120000_3"},
		{"a", "B_", "savepoint-a-B_"},
		{"", "1", ""},
		{"job", "", ""},
		{"-job", "1", ""},
		{".job", "1", ""},
		{"a/b", "1", ""},
		{"..", "1", ""},
		{"job", "1-2", ""},
		{"job", "_1", ""},
		{"job", "1.2", ""},
		{"j\x00b", "1", ""},
		{"jöb", "1", ""},
		{strings.Repeat("j", 129), "1", ""},
		{"job", strings.Repeat("1", 129), ""},
	} {
		got, err := DirName(tc.job, tc.id)
		if got != tc.want || (err != nil) != (tc.want == "") {
			t.Errorf("DirName(%q, %q) = %q, %v; want %q", tc.job, tc.id, got, err, tc.want)
		}
		if tc.want == "" {
			continue
		}
		job, id, err := ParseDirName("some/where/" + got)
		if err != nil || job != tc.job || id != tc.id {
			t.Errorf("ParseDirName(%q) = %q, %q, %v; want %q, %q", got, job, id, err, tc.job, tc.id)
		}
	}
}

func TestParseDirNameRefuses(t *testing.T) {
	for _, name := range []string{
		"", "savepoint-", "savepoint-job", "savepoint--1", "savepoint-job-", "chk-1",
		"savepoint-job-1.2", "savepoint-.job-1", "Savepoint-job-1", "savepoint-j/b-1x",
	} {
		if job, id, err := ParseDirName(name); err == nil {
			t.Errorf("ParseDirName(%q) = %q, %q, nil; want an error", name, job, id)
		}
	}
}

func TestCheckRelPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"t1-kg0-4.rec", true},
		{"sub/t1.rec", true},
		{"pipeline.pb", true},
		{"", false},
		{"/etc/passwd", false},
		{"../x.rec", false},
		{"a/../../x.rec", false},
		{"a/..", false},
		{"./x.rec", false},
		{".hidden", false},
		{"a//b", false},
		{"a\\b", false},
		{"_metadata", false},
	} {
		if err := checkRelPath(tc.path); (err == nil) != tc.ok {
			t.Errorf("checkRelPath(%q) = %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}
