package savepoint

import (
	"fmt"
	"path"
	"strings"

	"github.com/weir-runner/weir/checkpoint/storage"
)

// Names inside a savepoint directory.
const (
	// MetadataBase is the name of the metadata file, written last.
	MetadataBase = "_metadata"
	// PipelineBase is the name of the file holding the pipeline proto.
	PipelineBase = "pipeline.pb"
	// dirPrefix starts every savepoint directory name.
	dirPrefix = "savepoint-"
	// recordExt ends every data file name.
	recordExt = ".rec"
	// maxNameLen bounds job names and savepoint IDs.
	maxNameLen = 128
)

// DirName returns the name of the directory of savepoint id of job,
// "savepoint-<job>-<id>", after checking both (see CheckJob and CheckID).
func DirName(job, id string) (string, error) {
	if err := CheckJob(job); err != nil {
		return "", err
	}
	if err := CheckID(id); err != nil {
		return "", err
	}
	return dirPrefix + job + "-" + id, nil
}

// ParseDirName splits a savepoint directory name (its last path component
// is used) into job and id. Since an ID never contains '-', the ID is what
// follows the last '-'.
func ParseDirName(name string) (job, id string, err error) {
	base := path.Base(name)
	rest, ok := strings.CutPrefix(base, dirPrefix)
	i := strings.LastIndexByte(rest, '-')
	if !ok || i < 0 {
		return "", "", fmt.Errorf("savepoint: %q is not a savepoint directory name (want %s<job>-<id>)", name, dirPrefix)
	}
	job, id = rest[:i], rest[i+1:]
	if err := CheckJob(job); err != nil {
		return "", "", fmt.Errorf("savepoint: directory name %q: %w", name, err)
	}
	if err := CheckID(id); err != nil {
		return "", "", fmt.Errorf("savepoint: directory name %q: %w", name, err)
	}
	return job, id, nil
}

// CheckJob accepts job names that are a safe single path component: 1 to
// 128 ASCII letters, digits, '_', '-' and '.', starting with a letter or
// digit.
func CheckJob(job string) error {
	if !safeComponent(job, true) {
		return fmt.Errorf("savepoint: job name %q: want 1 to %d of [A-Za-z0-9_.-], starting with a letter or digit", job, maxNameLen)
	}
	return nil
}

// CheckID accepts savepoint IDs: 1 to 128 ASCII letters, digits and '_',
// starting with a letter or digit (no '-', so a directory name parses back).
func CheckID(id string) error {
	if !safeComponent(id, false) {
		return fmt.Errorf("savepoint: savepoint ID %q: want 1 to %d of [A-Za-z0-9_], starting with a letter or digit", id, maxNameLen)
	}
	return nil
}

func safeComponent(s string, dashDot bool) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '_' || dashDot && (c == '-' || c == '.')):
		default:
			return false
		}
	}
	return true
}

// checkDir accepts the directory argument of Open: "" (the store's root is
// the savepoint) or a valid object name.
func checkDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := storage.CheckName(dir); err != nil {
		return fmt.Errorf("savepoint: directory %q: %w", dir, err)
	}
	return nil
}

// join returns the object name of a file of the savepoint in dir.
func join(dir, rel string) string {
	if dir == "" {
		return rel
	}
	return dir + "/" + rel
}

// checkRelPath accepts the path of a file inside a savepoint directory as
// recorded in the metadata: relative, no '.' or '..' component, no empty
// component, no backslash, and not the metadata file itself.
func checkRelPath(p string) error {
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute", p)
	}
	for c := range strings.SplitSeq(p, "/") {
		if c == ".." {
			return fmt.Errorf("path %q leaves the savepoint directory", p)
		}
	}
	if err := storage.CheckName(p); err != nil {
		return fmt.Errorf("path %q: %w", p, err)
	}
	if p == MetadataBase {
		return fmt.Errorf("path %q is the metadata file", p)
	}
	return nil
}

// fileName is the name this package gives a data file: the section's
// letter and the owner's number in the section, then the key-group range
// of a keyed file or the number of an unkeyed one among its owner's.
func fileName(sec Section, owner int, kg *KeyGroupRange, n int) string {
	if kg == nil {
		return fmt.Sprintf("%c%d-%d%s", sec.letter(), owner, n, recordExt)
	}
	return fmt.Sprintf("%c%d-kg%d-%d%s", sec.letter(), owner, kg.Start, kg.End, recordExt)
}
