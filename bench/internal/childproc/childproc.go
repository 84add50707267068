// Package childproc owns how a benchmark runs one measurement in a fresh
// process: its own binary re-executed with other flags, with its own
// temporary directory and log file, killed at a timeout, measured by the
// kernel (wall time, CPU, peak RSS), and its report read back from a
// tagged line of its stdout.
package childproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// Run is one child process.
type Run struct {
	Self    string   // the binary
	Args    []string // its flags
	LogPath string   // its stdout and stderr, after a first line with the command
	// TempDir is its $TMPDIR; the caller makes and removes it.
	TempDir string
	Timeout time.Duration
}

// Result is what the kernel measured of a child, and its stdout.
type Result struct {
	Wall   time.Duration
	CPU    time.Duration // user + system
	RSS    int64         // peak, bytes
	Stdout []byte
}

// Start runs r to its end and returns the measurements; the error says
// why it failed (a timeout names it), with the result as far as it got.
func (r Run) Start(ctx context.Context) (*Result, error) {
	logf, err := os.Create(r.LogPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "# %s %s\n", r.Self, strings.Join(r.Args, " "))
	cctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	var stdout bytes.Buffer
	cmd := exec.CommandContext(cctx, r.Self, r.Args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+r.TempDir)
	cmd.Stdout = io.MultiWriter(&stdout, logf)
	cmd.Stderr = logf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGKILL) }
	start := time.Now()
	runErr := cmd.Run()
	res := &Result{Wall: time.Since(start), Stdout: stdout.Bytes()}
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.RSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
		res.CPU = ps.UserTime() + ps.SystemTime()
	}
	switch {
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("timed out after %s", r.Timeout)
	case ctx.Err() != nil:
		return res, ctx.Err()
	}
	return res, runErr
}

// Report decodes into v the JSON on the line of stdout that starts with
// tag; it reports whether there was one.
func Report(stdout []byte, tag string, v any) (bool, error) {
	sc := bufio.NewScanner(bytes.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), tag); ok {
			if err := json.Unmarshal([]byte(line), v); err != nil {
				return true, fmt.Errorf("reading the child's report: %w", err)
			}
			return true, nil
		}
	}
	return false, sc.Err()
}

// Tail is the last n lines of the file at path, indented.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "   " + strings.Join(lines, "\n   ")
}

// CPUProfile starts a CPU profile of this process into path ("" none);
// stop ends it.
func CPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
