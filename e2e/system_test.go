// Package e2e runs the whole system as a user does: the real binaries
// (dispatcher, reaper, and the workers the dispatcher starts), talking over
// HTTP, with the data in a temporary directory. Each test starts its own
// system on loopback ports and stops everything it started.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/e2e/internal/procs"
	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	// awstest.Main stops the moto server the aws-profile tests start.
	os.Exit(awstest.Main(&binaries{m}))
}

// binaries builds the service binaries once before the tests run.
type binaries struct{ m *testing.M }

func (b *binaries) Run() int { return runMain(b.m) }

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "jobfleet-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	for _, svc := range []string{"dispatcher", "worker", "reaper"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "jobfleet-"+svc), "github.com/jobfleet/jobfleet/services/"+svc)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n", svc, err)
			return 1
		}
	}
	return m.Run()
}

// proc is one running service binary.
type proc struct {
	name   string
	cmd    *exec.Cmd
	done   chan struct{}
	mu     sync.Mutex
	lines  []map[string]any // its JSON log lines
	raw    bytes.Buffer
	waited error
}

func (p *proc) logs() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

// find returns the first log line with msg, waiting up to d.
func (p *proc) find(t *testing.T, msg string, d time.Duration) map[string]any {
	t.Helper()
	var found map[string]any
	require.Eventually(t, func() bool {
		for _, l := range p.logs() {
			if l["msg"] == msg {
				found = l
				return true
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.waited, msg, p.output())
		default:
		}
		return false
	}, d, 10*time.Millisecond, "%s never logged %q:\n%s", p.name, msg, p.output())
	return found
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

func (p *proc) signal(sig syscall.Signal) { _ = p.cmd.Process.Signal(sig) }

// stop sends SIGTERM and waits for the exit (SIGKILL after d).
func (p *proc) stop(d time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		p.signal(syscall.SIGKILL)
		<-p.done
	}
}

// System is a running local-profile system.
type System struct {
	t      *testing.T
	Dir    string
	env    []string
	URL    string
	Client *client.Client // the current dispatcher's; use client() while it may restart
	mu     sync.Mutex
	Disp   *proc
	Reaper *proc
	logDir string
}

// options tune a system; values are JOBFLEET_* variables.
type options map[string]string

// defaults make recovery fast enough to test in seconds.
var defaults = options{
	"JOBFLEET_HEARTBEAT":      "500ms",
	"JOBFLEET_LEASE":          "2s",
	"JOBFLEET_VISIBILITY":     "3s",
	"JOBFLEET_SWEEP":          "500ms",
	"JOBFLEET_RESEND_AFTER":   "5s",
	"JOBFLEET_IDLE_TIMEOUT":   "10s",
	"JOBFLEET_DRAIN_TIMEOUT":  "2s",
	"JOBFLEET_STOP_TIMEOUT":   "5s",
	"JOBFLEET_MAX_WORKERS":    "2",
	"JOBFLEET_CONCURRENCY":    "4",
	"JOBFLEET_SCALE_INTERVAL": "250ms",
	"JOBFLEET_EXEC_ALLOW":     "sh",
	"JOBFLEET_RETRY_BASE":     "200ms",
	"JOBFLEET_RETRY_MAX":      "1s",
	"JOBFLEET_LOG_LEVEL":      "debug",
}

// start runs a dispatcher and a reaper over a fresh data directory.
func start(t *testing.T, opts options) *System {
	t.Helper()
	dir := t.TempDir()
	s := &System{t: t, Dir: dir, logDir: filepath.Join(dir, "logs")}
	require.NoError(t, os.MkdirAll(s.logDir, 0o755))
	env := map[string]string{
		"JOBFLEET_DATA_DIR":       filepath.Join(dir, "data"),
		"JOBFLEET_HTTP_ADDR":      "127.0.0.1:0",
		"JOBFLEET_REAPER_ADDR":    "127.0.0.1:0",
		"JOBFLEET_WORKER_ADDR":    "127.0.0.1:0",
		"JOBFLEET_WORKER_COMMAND": filepath.Join(binDir, "jobfleet-worker"),
	}
	for k, v := range defaults {
		env[k] = v
	}
	for k, v := range opts {
		env[k] = v
	}
	moto := false
	if env["JOBFLEET_PROFILE"] == "aws" {
		// The aws profile's adapters with a fresh set of resources for this
		// test, named from the prefix in JOBFLEET_RESOURCE_PREFIX (default
		// e2e); workers are local processes. On the moto server awstest
		// started, with its region and test credentials; on the endpoint
		// AWS_ENDPOINT_URL names (or AWS itself), with the caller's AWS_*
		// settings, and the resources are deleted afterwards.
		moto = awstest.IsMoto(t)
		if moto {
			env["AWS_ENDPOINT_URL"] = awstest.Endpoint(t)
			env["AWS_REGION"] = awstest.Region
			env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "test", "test"
		}
		env["JOBFLEET_FLEET"] = "local"
		env["JOBFLEET_RESOURCE_PREFIX"] = testPrefix() + "-" + strings.ToLower(job.NewID(time.Now())[16:])
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOBFLEET_") && !(moto && strings.HasPrefix(kv, "AWS_")) && !strings.HasPrefix(kv, "GORACE") {
			s.env = append(s.env, kv)
		}
	}
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}
	if env["JOBFLEET_PROFILE"] == "aws" {
		boot := exec.Command(filepath.Join(binDir, "jobfleet-dispatcher"), "bootstrap")
		for _, kv := range s.env { // no injected faults while setting up
			if !strings.HasPrefix(kv, "JOBFLEET_INJECT_AWS_FAULTS=") {
				boot.Env = append(boot.Env, kv)
			}
		}
		out, err := boot.CombinedOutput()
		require.NoError(t, err, "bootstrap: %s", out)
		if !moto {
			prefix := env["JOBFLEET_RESOURCE_PREFIX"]
			t.Cleanup(func() { deleteResources(t, prefix) })
		}
	}
	s.Reaper = s.spawn("reaper")
	s.Reaper.find(t, "reaper ready", 30*time.Second)
	s.StartDispatcher()
	t.Cleanup(s.Stop)
	return s
}

// profiles runs fn once per profile, as parallel subtests.
func profiles(t *testing.T, fn func(t *testing.T, opts options)) {
	for _, p := range []string{"local", "aws"} {
		t.Run(p, func(t *testing.T) {
			t.Parallel()
			fn(t, options{"JOBFLEET_PROFILE": p})
		})
	}
}

// envValue returns the system's setting of an environment variable.
func (s *System) envValue(name string) string {
	for _, kv := range s.env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// StartDispatcher starts (or restarts) the dispatcher and points the
// client at it.
func (s *System) StartDispatcher() {
	s.t.Helper()
	s.Disp = s.spawn("dispatcher")
	ready := s.Disp.find(s.t, "dispatcher ready", 30*time.Second)
	c, err := client.New("http://"+ready["addr"].(string), nil)
	require.NoError(s.t, err)
	s.mu.Lock()
	s.URL = "http://" + ready["addr"].(string)
	s.Client = c
	s.mu.Unlock()
}

// client returns the current dispatcher's client (safe while another
// goroutine restarts the dispatcher).
func (s *System) client() *client.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Client
}

func (s *System) spawn(svc string) *proc {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "jobfleet-"+svc))
	cmd.Env = s.env
	cmd.Dir = s.Dir
	// A pipe of our own rather than StderrPipe: the dispatcher's workers
	// inherit its stderr, so the pipe stays open after the dispatcher
	// exits, and its exit must not wait for theirs.
	r, w, err := os.Pipe()
	require.NoError(s.t, err)
	cmd.Stderr = w
	cmd.Stdout = io.Discard
	// Its own process group, so the test can stop it and its workers.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // gone with the test binary, even on a timeout
	require.NoError(s.t, cmd.Start())
	w.Close()
	p := &proc{name: svc, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var m map[string]any
			p.mu.Lock()
			p.raw.Write(line)
			p.raw.WriteByte('\n')
			if json.Unmarshal(line, &m) == nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
		}
	}()
	go func() {
		p.waited = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Stop stops the dispatcher (which stops its workers) and the reaper, and
// kills anything left in their process groups.
func (s *System) Stop() {
	for _, p := range []*proc{s.Disp, s.Reaper} {
		if p == nil {
			continue
		}
		p.stop(15 * time.Second)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		if s.t.Failed() || os.Getenv("E2E_LOGS") != "" {
			s.t.Logf("%s output:\n%s", p.name, p.output())
		}
	}
	for _, pid := range s.workerPIDs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// workerPIDs lists live worker processes started for this system (their
// command line names its worker binary and their environment its data dir).
func (s *System) workerPIDs() []int {
	var out []int
	for _, pid := range procs.WithEnv("JOBFLEET_DATA_DIR=" + filepath.Join(s.Dir, "data")) {
		if procs.Runs(pid, "jobfleet-worker") {
			out = append(out, pid)
		}
	}
	return out
}

// wait waits for the job to reach a terminal state.
func (s *System) wait(id string, d time.Duration) *client.Job {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	j, err := s.Client.Wait(ctx, id, 20*time.Millisecond)
	require.NoError(s.t, err, "job %s did not finish within %s", id, d)
	return j
}

// waitFor polls the job until cond holds.
func (s *System) waitFor(id string, d time.Duration, cond func(*client.Job) bool) *client.Job {
	s.t.Helper()
	var j *client.Job
	require.Eventually(s.t, func() bool {
		var err error
		j, err = s.Client.Get(context.Background(), id)
		require.NoError(s.t, err)
		return cond(j)
	}, d, 10*time.Millisecond)
	return j
}
