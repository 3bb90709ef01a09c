package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// kill -9 every process mid-run — dispatcher, reaper, every worker — then
// start the system again on the same data: every acknowledged job finishes.
func TestKillEverythingMidRun(t *testing.T) {
	t.Parallel()
	s := start(t, options{"JOBFLEET_MAX_WORKERS": "2"})
	ctx := context.Background()
	var ids []string
	for i := range 40 {
		sub := job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":0.5}`)}
		if i%2 == 0 {
			sub = job.Submission{Type: "echo", Payload: json.RawMessage(fmt.Sprint(i))}
		}
		j, err := s.Client.Submit(ctx, sub)
		require.NoError(t, err) // acknowledged: it must finish
		ids = append(ids, j.ID)
	}
	// Wait until work is under way, then kill everything at once.
	require.Eventually(t, func() bool { return len(s.workerPIDs()) > 0 }, 20*time.Second, 10*time.Millisecond)
	victims := append(s.workerPIDs(), s.Disp.cmd.Process.Pid, s.Reaper.cmd.Process.Pid)
	for _, pid := range victims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-s.Disp.done
	<-s.Reaper.done
	require.Eventually(t, func() bool { return len(s.workerPIDs()) == 0 }, 10*time.Second, 10*time.Millisecond)

	s.Reaper = s.spawn("reaper")
	s.Reaper.find(t, "reaper ready", 30*time.Second)
	s.StartDispatcher()
	rerun := 0
	for _, id := range ids {
		j := s.wait(id, 90*time.Second)
		require.Equal(t, job.Succeeded, j.Status, "%s: %+v", id, j)
		if j.Attempt > 1 {
			rerun++
		}
	}
	t.Logf("all %d acknowledged jobs finished; %d ran again after the kill", len(ids), rerun)
}

// A flood of requests is answered — served or refused with 429 — and the
// service stays up.
func TestRequestFlood(t *testing.T) {
	t.Parallel()
	s := start(t, options{"JOBFLEET_MAX_IN_FLIGHT": "8"})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Client.Submit(context.Background(), job.Submission{Type: "echo", Payload: json.RawMessage(fmt.Sprint(i))})
			code := 201
			if err != nil {
				var p *client.Problem
				require.ErrorAs(t, err, &p, "every request gets an answer")
				code = p.Status
				require.True(t, errcode.Retryable(err), "refusals are retryable: %v", err)
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("flood of 400 submissions: %v", codes)
	require.Equal(t, 400, codes[201]+codes[429], "%v", codes)
	j, err := s.Client.Submit(context.Background(), job.Submission{Type: "echo"})
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, s.wait(j.ID, 60*time.Second).Status)
}

// A client that sends headers too slowly is cut off by the server's read
// timeout instead of holding a connection forever.
func TestSlowClientCutOff(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	conn, err := net.Dial("tcp", s.URL[len("http://"):])
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write([]byte("POST /v1/jobs HTTP/1.1\r\nHost: x\r\n"))
	require.NoError(t, err)
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	buf := make([]byte, 1024)
	_, err = conn.Read(buf) // the server closes the connection
	require.Error(t, err)
	require.Less(t, time.Since(start), 20*time.Second, "cut off by the header timeout")
	resp, err := http.Get(s.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
