package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Proc is a child process started in its own process group, so that it and
// whatever it starts can be stopped together.
type Proc struct {
	Cmd   *exec.Cmd
	Began time.Time
	Wall  time.Duration // set once the process has exited
	done  chan struct{}
	err   error
}

// Start starts cmd in a new process group.
func Start(cmd *exec.Cmd) (*Proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Do not hang on pipes held open by grandchildren after the child exits.
	cmd.WaitDelay = 5 * time.Second
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	p.Began = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		p.Wall = time.Since(p.Began)
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the process to exit and returns its error.
func (p *Proc) Wait() error { <-p.done; return p.err }

// signalGroup sends sig to the process group.
func (p *Proc) signalGroup(sig syscall.Signal) {
	if p.Cmd.Process != nil {
		_ = syscall.Kill(-p.Cmd.Process.Pid, sig)
	}
}

// Stop sends SIGTERM to the process (group too if group is set), waits up to
// grace, then kills the whole group. It returns the process's exit error.
func (p *Proc) Stop(grace time.Duration, group bool) error {
	if !p.Exited() {
		if group {
			p.signalGroup(syscall.SIGTERM)
		} else {
			_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.done:
		case <-time.After(grace):
		}
	}
	p.signalGroup(syscall.SIGKILL) // leftovers
	return p.Wait()
}

// MaxRSS returns the peak resident set size of the exited process in bytes
// (getrusage ru_maxrss, which Linux reports in KiB), or 0 if unknown.
func (p *Proc) MaxRSS() int64 {
	if p.Cmd.ProcessState == nil {
		return 0
	}
	if ru, ok := p.Cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return int64(ru.Maxrss) * 1024
	}
	return 0
}

// RunTimeout runs cmd in its own process group; if it outlives timeout or ctx,
// the group gets SIGTERM and, 10 s later, SIGKILL. timedOut says whether that
// happened.
func RunTimeout(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (p *Proc, timedOut bool, err error) {
	p, err = Start(cmd)
	if err != nil {
		return nil, false, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.Done():
		return p, false, p.err
	case <-t.C:
		timedOut = true
	case <-ctx.Done():
	}
	return p, timedOut, p.Stop(10*time.Second, true)
}

// Server is a `weir serve` child process.
type Server struct {
	Endpoint string
	LogPath  string
	proc     *Proc
	dir      string
}

// StartWeir starts `bin serve --job_port=0 --endpoint_file=F extra...`, with
// output appended to logPath, and waits until it writes its endpoint to F and
// accepts connections.
func StartWeir(ctx context.Context, bin string, extra []string, logPath string) (*Server, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("weir binary: %w (build it with `make build`)", err)
	}
	dir, err := os.MkdirTemp("", "weir-serve-")
	if err != nil {
		return nil, err
	}
	epFile := filepath.Join(dir, "endpoint")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	args := append([]string{"serve", "--job_port=0", "--endpoint_file=" + epFile}, extra...)
	fmt.Fprintf(logf, "==== %s %s %s\n", time.Now().Format(time.RFC3339), abs, strings.Join(args, " "))
	cmd := exec.Command(abs, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	p, err := Start(cmd)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{LogPath: logPath, proc: p, dir: dir}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if b, err := os.ReadFile(epFile); err == nil {
			ep := strings.TrimSpace(string(b))
			if _, _, err := net.SplitHostPort(ep); err == nil {
				if c, err := net.DialTimeout("tcp", ep, time.Second); err == nil {
					c.Close()
					s.Endpoint = ep
					return s, nil
				}
			}
		}
		select {
		case <-p.Done():
			s.Stop()
			return nil, fmt.Errorf("weir serve exited before listening (%v); log %s:\n%s", p.err, logPath, Tail(logPath, 30))
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("weir serve did not write %s within 90s; log %s:\n%s", epFile, logPath, Tail(logPath, 30))
		}
	}
}

// Alive reports whether the server is still running.
func (s *Server) Alive() bool { return !s.proc.Exited() }

// Proc returns the server's process.
func (s *Server) Proc() *Proc { return s.proc }

// Stop sends SIGTERM, waits up to 20 s, then kills the group. An exit caused
// by the SIGTERM is not an error; a server that crashed earlier is.
func (s *Server) Stop() error {
	crashed := s.proc.Exited()
	err := s.proc.Stop(20*time.Second, false)
	os.RemoveAll(s.dir)
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if !crashed && errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
			return nil
		}
	}
	return fmt.Errorf("weir serve: %w", err)
}

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return TailLines(string(b), n)
}

// TailLines returns the last n lines of s, each cut to 1000 bytes.
func TailLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	for i, l := range lines {
		if len(l) > 1000 {
			lines[i] = l[:1000] + fmt.Sprintf(" ... (%d bytes more)", len(l)-1000)
		}
	}
	return strings.Join(lines, "\n")
}
