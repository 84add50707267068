// Package driver holds what the conformance and bench drivers share: a cache
// of binaries built from Beam's packages, and child processes (a weir job
// server, pipelines) run in their own process group with a timeout.
package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// InRoot resolves p against the module root root, unless it is absolute.
func InRoot(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// ModuleRoot returns the directory holding go.mod, searching up from the
// working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found in any parent of the working directory")
		}
		dir = parent
	}
}

// GoEnv returns `go env name`.
func GoEnv(ctx context.Context, root, name string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", name)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Cache builds binaries from packages of the module's build list into Dir and
// rebuilds one only when its key changes. The key covers go.sum, the Go
// version, GOFLAGS, the build mode and the package path.
type Cache struct {
	Root string    // module root: builds run here, with its go.mod and go.sum
	Dir  string    // where binaries and their .key files live
	Log  io.Writer // progress and go command output
}

// Mode is how a binary is built.
type Mode int

const (
	// TestBinary is `go test -c`: the binary is DIR/<name>.test.
	TestBinary Mode = iota
	// Command is `go build` of a main package: the binary is DIR/<name>.
	Command
)

func (m Mode) suffix() string {
	if m == TestBinary {
		return ".test"
	}
	return ""
}

// Ensure returns the path of the binary for each name in pkgs (name → import
// path; name must be the import path's last element), building in one go
// command those that are missing or stale.
func (c *Cache) Ensure(ctx context.Context, mode Mode, pkgs map[string]string) (map[string]string, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, err
	}
	sum, err := os.ReadFile(filepath.Join(c.Root, "go.sum"))
	if err != nil {
		return nil, err
	}
	goVersion, err := GoEnv(ctx, c.Root, "GOVERSION")
	if err != nil {
		return nil, err
	}
	goFlags, err := GoEnv(ctx, c.Root, "GOFLAGS")
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pkgs))
	for name := range pkgs {
		names = append(names, name)
	}
	sort.Strings(names)

	paths := map[string]string{}
	keys := map[string]string{}
	var stale []string
	for _, name := range names {
		pkg := pkgs[name]
		if filepath.Base(pkg) != name {
			return nil, fmt.Errorf("binary name %q must be the last element of %s", name, pkg)
		}
		h := sha256.New()
		fmt.Fprintf(h, "mode=%d\npkg=%s\ngo=%s\nGOFLAGS=%s\n", mode, pkg, goVersion, goFlags)
		h.Write(sum)
		keys[name] = hex.EncodeToString(h.Sum(nil))
		paths[name] = filepath.Join(c.Dir, name+mode.suffix())
		old, err := os.ReadFile(paths[name] + ".key")
		if _, serr := os.Stat(paths[name]); err != nil || serr != nil || strings.TrimSpace(string(old)) != keys[name] {
			stale = append(stale, name)
		}
	}
	if len(stale) == 0 {
		return paths, nil
	}

	tmp, err := os.MkdirTemp(c.Dir, "build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"build", "-o", tmp + string(filepath.Separator)}
	if mode == TestBinary {
		args = []string{"test", "-c", "-o", tmp + string(filepath.Separator)}
	}
	for _, name := range stale {
		args = append(args, pkgs[name])
	}
	fmt.Fprintf(c.Log, "building %d binaries into %s (a cold build takes minutes): %s\n", len(stale), c.Dir, strings.Join(stale, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = c.Root
	cmd.Stdout = c.Log
	cmd.Stderr = c.Log
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	for _, name := range stale {
		built := filepath.Join(tmp, name+mode.suffix())
		if _, err := os.Stat(built); err != nil {
			return nil, fmt.Errorf("go %s did not produce %s (no test files?)", args[0], built)
		}
		os.Remove(paths[name] + ".key")
		if err := os.Rename(built, paths[name]); err != nil {
			return nil, err
		}
		if err := os.WriteFile(paths[name]+".key", []byte(keys[name]+"\n"), 0o644); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// PackageDirs returns the source directory of each package (import path →
// directory), as `go test` runs a test binary in its package's directory.
func PackageDirs(ctx context.Context, root string, pkgs []string) (map[string]string, error) {
	args := append([]string{"list", "-f", "{{.ImportPath}}\t{{.Dir}}"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w", err)
	}
	dirs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if p, d, ok := strings.Cut(line, "\t"); ok {
			dirs[p] = d
		}
	}
	return dirs, nil
}
