package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/e2e/internal/procs"
	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// make run's script: it prints the API address and a sample curl, the
// sample works (an echo job succeeds with workers started from zero),
// Ctrl-C stops every process, and the jobs are there after a restart.
func TestMakeRunScript(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), ".jobfleet")
	ctx := context.Background()

	// started is make run's script, running, with its API answering.
	type started struct {
		cmd    *exec.Cmd
		out    *syncBuffer
		exited chan error
		addr   string
		client *client.Client
	}
	start := func(addr string) *started {
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
		s := &started{cmd: cmd, out: &syncBuffer{}, exited: make(chan error, 1), addr: addr}
		cmd.Stdout, cmd.Stderr = s.out, s.out
		// Its own process group, as a terminal's Ctrl-C reaches it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		require.NoError(t, cmd.Start())
		go func() { s.exited <- cmd.Wait() }()
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			for _, pid := range processesUsing(data) { // workers have groups of their own
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})
		c, err := client.New("http://"+addr, nil)
		require.NoError(t, err)
		s.client = c
		return s
	}
	// run starts the script on a free port and waits until its API
	// answers; a port another process took between our picking it and the
	// dispatcher binding it is picked again.
	run := func() *started {
		for try := 1; ; try++ {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			addr := ln.Addr().String()
			ln.Close()
			s := start(addr)
			deadline := time.Now().Add(60 * time.Second)
			for {
				if _, err := s.client.List(ctx, client.ListOptions{}); err == nil {
					return s
				}
				select {
				case err := <-s.exited:
					if try < 3 && strings.Contains(s.out.String(), "address already in use") {
						break
					}
					t.Fatalf("make run exited (%v):\n%s", err, s.out.String())
				case <-time.After(50 * time.Millisecond):
					if time.Now().After(deadline) {
						t.Fatalf("make run's API did not answer:\n%s", s.out.String())
					}
					continue
				}
				break // the port was taken: again
			}
		}
	}
	ctrlC := func(s *started) {
		require.NoError(t, syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT))
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("make run did not stop on Ctrl-C:\n%s", s.out.String())
		}
		// Nothing of it is left: no process with its data directory.
		require.Eventually(t, func() bool { return len(processesUsing(data)) == 0 }, 10*time.Second, 50*time.Millisecond,
			"left running: %v\n%s", processesUsing(data), s.out.String())
	}

	s := run()
	require.Contains(t, s.out.String(), "API on http://"+s.addr)
	require.Eventually(t, func() bool { return strings.Contains(s.out.String(), `"msg":"reaper ready"`) }, 30*time.Second, 20*time.Millisecond,
		"the reaper did not come up:\n%s", s.out.String())
	require.Contains(t, s.out.String(), `curl -s -XPOST http://`+s.addr+`/v1/jobs -d '{"type":"echo","payload":{"hi":1}}'`)
	j, err := s.client.Submit(ctx, job.Submission{Type: "echo", Payload: json.RawMessage(`{"hi":1}`)})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done, err := s.client.Wait(wctx, j.ID, 20*time.Millisecond)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, done.Status)
	require.JSONEq(t, `{"hi":1}`, string(done.Result))
	ctrlC(s)

	// The job survives a restart.
	s = run()
	again, err := s.client.Get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, again.Status)
	ctrlC(s)
}

// processesUsing lists the pids whose environment points at data (make
// run's DATA, or JOBFLEET_DATA_DIR as the workers have it).
func processesUsing(data string) []int {
	pids := append(procs.WithEnv("DATA="+data), procs.WithEnv("JOBFLEET_DATA_DIR="+data)...)
	slices.Sort(pids)
	return slices.Compact(pids)
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
