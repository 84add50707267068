package typescript

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pipelines are the JavaScript pipelines here, each run against weir serve.
var pipelines = []string{"wordcount", "windowed", "extras"}

// TestTypeScriptPipelines runs each pipeline of Beam's TypeScript SDK, as
// published, on `weir serve` with LOOPBACK workers, and then each with
// --break (one expected count off by one) to prove that a wrong result
// fails the job and node exits non-zero.
//
// Needs node and npm; without them the test skips, except in CI (CI set),
// where that is a failure. WEIR_BIN names a built weir binary; without it
// the test builds one.
func TestTypeScriptPipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the TypeScript pipelines take about half a minute")
	}
	node, npm := needNode(t)
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	npmCI(t, npm, dir)
	endpoint := startWeir(t, weirBinary(t))

	for _, p := range pipelines {
		t.Run(p, func(t *testing.T) {
			out, err := runNode(t, node, dir, p, endpoint)
			if err != nil {
				t.Fatalf("node %s.js: %v\n%s", p, err, tail(out))
			}
			if want := fmt.Sprintf("PIPELINE %s PASSED", p); !bytes.Contains(out, []byte(want)) {
				t.Fatalf("node %s.js exited 0 without %q:\n%s", p, want, tail(out))
			}
		})
		t.Run(p+"/break", func(t *testing.T) {
			out, err := runNode(t, node, dir, p, endpoint, "--break")
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !bytes.Contains(out, []byte("Job finished in state FAILED")) {
				t.Fatalf("node %s.js --break: %v, want it to fail with the job:\n%s", p, err, tail(out))
			}
		})
	}
}

// needNode returns the paths of node and npm, or skips the test (fails it
// in CI) if either is missing.
func needNode(t *testing.T) (node, npm string) {
	t.Helper()
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr == nil && perr == nil {
		return node, npm
	}
	why := fmt.Sprintf("node or npm not found (%v; %v): install Debian's nodejs and npm (.ci/run does)", nerr, perr)
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
	return "", ""
}

// npmCI installs the pinned SDK from package-lock.json if node_modules
// does not hold it yet.
func npmCI(t *testing.T, npm, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "apache-beam", "package.json")); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, tail(out))
	}
}

// weirBinary returns WEIR_BIN, or builds cmd/weir into the test's temp dir.
func weirBinary(t *testing.T) string {
	t.Helper()
	if b := os.Getenv("WEIR_BIN"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "weir")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/weir-runner/weir/cmd/weir")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building weir: %v\n%s", err, out)
	}
	return bin
}

// startWeir starts `weir serve` on a free port of 127.0.0.1 and returns its
// endpoint; it is stopped (interrupted, killed if it lingers) when the test
// ends, and its log is shown if the test failed.
func startWeir(t *testing.T, bin string) string {
	t.Helper()
	tmp := t.TempDir()
	epFile := filepath.Join(tmp, "endpoint")
	var log bytes.Buffer
	cmd := exec.Command(bin, "serve", "--job_port=0", "--endpoint_file="+epFile, "--state_dir="+tmp, "--metrics_addr=", "--progress_every=0")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting weir serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // ends when the server does
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("weir serve log:\n%s", tail(log.Bytes()))
		}
	})
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile(epFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return strings.TrimSpace(string(b))
		}
		select {
		case err := <-exited:
			t.Fatalf("weir serve exited before listening: %v\n%s", err, log.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("weir serve wrote no endpoint to %s within a minute:\n%s", epFile, log.Bytes())
		}
	}
}

// runNode runs pipeline p with node against endpoint and returns its output.
func runNode(t *testing.T, node, dir, p, endpoint string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{p + ".js", "--jobEndpoint=" + endpoint, "--jobName=" + p}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return out, fmt.Errorf("still running after 5 minutes: %w", ctx.Err())
	}
	return out, err
}

// tail is the end of a long output: the SDK's worker logs every instruction.
func tail(b []byte) []byte {
	const max = 8 << 10
	if len(b) > max {
		return append([]byte("...\n"), b[len(b)-max:]...)
	}
	return b
}
