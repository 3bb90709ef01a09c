package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/e2e/internal/procs"
	"github.com/jobfleet/jobfleet/pkg/client"
)

// services are the binaries the failover and footprint scenarios run.
var services = []string{"dispatcher", "worker", "reaper"}

// bins holds the binaries, built once per run and build tags on first use.
var bins struct {
	mu   sync.Mutex
	dirs map[string]string // by build tags
}

// binaries builds the three service binaries as the container image does
// (infra/Dockerfile: static, without symbols, with the given build tags;
// without -race whatever the test binary has) and returns their directory.
func binaries(t *testing.T, tags string) string {
	t.Helper()
	bins.mu.Lock()
	defer bins.mu.Unlock()
	if dir, ok := bins.dirs[tags]; ok {
		return dir
	}
	dir, err := os.MkdirTemp("", "jobfleet-bench-bin-")
	require.NoError(t, err)
	for _, svc := range services {
		cmd := exec.Command("go", "build", "-tags", tags, "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "jobfleet-"+svc), "github.com/jobfleet/jobfleet/services/"+svc)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("build %s (tags %q): %v\n%s", svc, tags, err, out)
		}
	}
	if bins.dirs == nil {
		bins.dirs = map[string]string{}
	}
	bins.dirs[tags] = dir
	return dir
}

func removeBinaries() {
	bins.mu.Lock()
	defer bins.mu.Unlock()
	for _, dir := range bins.dirs {
		os.RemoveAll(dir)
	}
}

// proc is a running service binary and its JSON log lines.
type proc struct {
	name  string
	cmd   *exec.Cmd
	done  chan struct{}
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

// wait returns the first log line with msg, failing the test after d.
func (p *proc) wait(t *testing.T, msg string, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seen := 0; ; {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if p.lines[seen]["msg"] == msg {
				l := p.lines[seen]
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("%s exited before logging %q:\n%s", p.name, msg, p.output())
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s:\n%s", p.name, msg, d, p.output())
		}
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// stop sends SIGTERM, waits up to d, then kills the process group.
func (p *proc) stop(d time.Duration) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// system is a local-profile system of real processes: a reaper, a
// dispatcher, and the workers the dispatcher's fleet starts.
type system struct {
	t      *testing.T
	dir    string
	env    []string
	disp   *proc
	reaper *proc
	client *client.Client
	once   sync.Once
}

// startSystem starts a reaper and a dispatcher (default builds) over a fresh
// data directory with the given JOBFLEET_* settings; the test's cleanup
// stops everything.
func startSystem(t *testing.T, settings env) *system {
	t.Helper()
	return startSystemFrom(t, binaries(t, ""), settings)
}

// startSystemFrom is startSystem with the binaries in bin.
func startSystemFrom(t *testing.T, bin string, settings env) *system {
	t.Helper()
	s := newSystem(t, bin, settings)
	s.reaper = s.spawn(bin, "reaper")
	s.reaper.wait(t, "reaper ready", 30*time.Second)
	s.disp = s.spawn(bin, "dispatcher")
	ready := s.disp.wait(t, "dispatcher ready", 30*time.Second)
	c, err := client.New("http://"+ready["addr"].(string), nil)
	require.NoError(t, err)
	s.client = c
	return s
}

// newSystem prepares a system of the binaries in bin over a fresh data
// directory, its processes' environment being the caller's without its
// JOBFLEET_* and AWS_* variables, plus settings; nothing runs yet. The
// test's cleanup stops what it starts.
func newSystem(t *testing.T, bin string, settings env) *system {
	t.Helper()
	s := &system{t: t, dir: t.TempDir()}
	vars := env{
		"JOBFLEET_DATA_DIR":       filepath.Join(s.dir, "data"),
		"JOBFLEET_HTTP_ADDR":      "127.0.0.1:0",
		"JOBFLEET_REAPER_ADDR":    "127.0.0.1:0",
		"JOBFLEET_WORKER_ADDR":    "127.0.0.1:0",
		"JOBFLEET_WORKER_COMMAND": filepath.Join(bin, "jobfleet-worker"),
		"JOBFLEET_LOG_LEVEL":      "info",
	}
	maps.Copy(vars, settings)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JOBFLEET_") && !strings.HasPrefix(kv, "AWS_") {
			s.env = append(s.env, kv)
		}
	}
	for k, v := range vars {
		s.env = append(s.env, k+"="+v)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *system) spawn(bin, svc string) *proc {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(bin, "jobfleet-"+svc))
	cmd.Env = s.env
	cmd.Dir = s.dir
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	require.NoError(s.t, err)
	// Its own process group, so that stop reaches its workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(s.t, cmd.Start())
	p := &proc{name: svc, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			p.mu.Lock()
			p.raw.Write(sc.Bytes())
			p.raw.WriteByte('\n')
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
		}
		_ = cmd.Wait()
		close(p.done)
	}()
	return p
}

// stop stops the dispatcher (and so its workers) and the reaper, and kills
// any worker left. It is safe to call twice.
func (s *system) stop() { s.once.Do(s.stopOnce) }

func (s *system) stopOnce() {
	for _, p := range []*proc{s.disp, s.reaper} {
		if p == nil {
			continue
		}
		p.stop(15 * time.Second)
		if s.t.Failed() {
			s.t.Logf("%s output:\n%s", p.name, p.output())
		}
	}
	for _, pid := range s.workerPIDs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// workerPIDs lists the live worker processes of this system: their command
// is the worker binary and their environment names its data directory.
func (s *system) workerPIDs() []int {
	var out []int
	for _, pid := range procs.WithEnv("JOBFLEET_DATA_DIR=" + filepath.Join(s.dir, "data")) {
		if procs.Runs(pid, "jobfleet-worker") && !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	st, err := procStatus(pid)
	return err != nil || strings.HasPrefix(st["State"], "Z")
}

// procStatus reads /proc/<pid>/status as a map.
func procStatus(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for l := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, nil
}

// ownerPID is the pid in a local worker's identity, host/pid.
func ownerPID(t *testing.T, owner string) int {
	t.Helper()
	i := strings.LastIndexByte(owner, '/')
	require.Positive(t, i, "owner %q is not host/pid", owner)
	pid, err := strconv.Atoi(owner[i+1:])
	require.NoError(t, err)
	return pid
}
