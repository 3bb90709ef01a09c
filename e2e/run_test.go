package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// make run's script: it prints the API address and a sample curl, the
// sample works (an echo job succeeds with workers started from zero),
// Ctrl-C stops every process, and the jobs are there after a restart.
func TestMakeRunScript(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), ".jobfleet")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()

	run := func() (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command("../scripts/run")
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "JOBFLEET_") && !strings.HasPrefix(kv, "AWS_") {
				env = append(env, kv)
			}
		}
		// make run's own settings; the reaper's and workers' listeners on
		// free ports, since tests run side by side.
		cmd.Env = append(env, "BIN="+binDir, "DATA="+data, "HTTP_ADDR="+addr, "PROFILE=local",
			"JOBFLEET_REAPER_ADDR=127.0.0.1:0", "JOBFLEET_WORKER_ADDR=127.0.0.1:0")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		// Its own process group, as a terminal's Ctrl-C reaches it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			for _, pid := range processesUsing(data) { // workers have groups of their own
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		return cmd, out
	}
	ctrlC := func(cmd *exec.Cmd, out *syncBuffer) {
		require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("make run did not stop on Ctrl-C:\n%s", out.String())
		}
		// Nothing of it is left: no process with its data directory.
		require.Eventually(t, func() bool { return len(processesUsing(data)) == 0 }, 10*time.Second, 50*time.Millisecond,
			"left running: %v\n%s", processesUsing(data), out.String())
	}

	cmd, out := run()
	c, err := client.New("http://"+addr, nil)
	require.NoError(t, err)
	ctx := context.Background()
	require.Eventually(t, func() bool { _, err := c.List(ctx, client.ListOptions{}); return err == nil }, 60*time.Second, 50*time.Millisecond, "%s", out.String())
	require.Contains(t, out.String(), "API on http://"+addr)
	require.Contains(t, out.String(), `"msg":"reaper ready"`)
	require.Contains(t, out.String(), `curl -s -XPOST http://`+addr+`/v1/jobs -d '{"type":"echo","payload":{"hi":1}}'`)
	j, err := c.Submit(ctx, job.Submission{Type: "echo", Payload: json.RawMessage(`{"hi":1}`)})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done, err := c.Wait(wctx, j.ID, 20*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, done.Status)
	require.JSONEq(t, `{"hi":1}`, string(done.Result))
	ctrlC(cmd, out)

	// The job survives a restart.
	cmd, out = run()
	require.Eventually(t, func() bool { _, err := c.Get(ctx, j.ID); return err == nil }, 60*time.Second, 50*time.Millisecond, "%s", out.String())
	again, err := c.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, again.Status)
	ctrlC(cmd, out)
}

// processesUsing lists the pids whose environment points at data (make
// run's DATA, or JOBFLEET_DATA_DIR as the workers have it).
func processesUsing(data string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && (bytes.Contains(env, []byte("\x00DATA="+data+"\x00")) || bytes.Contains(env, []byte("JOBFLEET_DATA_DIR="+data+"\x00"))) {
			out = append(out, pid)
		}
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
