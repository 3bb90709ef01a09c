package handlers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// syncBuffer is a log that an exec's stdout and stderr may write at once.
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

func run(t *testing.T, ctx context.Context, reg *worker.Registry, typ, payload string) (json.RawMessage, string, error) {
	t.Helper()
	h, ok := reg.Lookup(typ)
	require.True(t, ok)
	var log syncBuffer
	j := &worker.Job{ID: "01J0000000000000000000000", Type: typ, Attempt: 1, Payload: json.RawMessage(payload), Log: &log, Logger: slog.New(slog.DiscardHandler)}
	res, err := h.Handle(ctx, j)
	return res, log.String(), err
}

func TestEchoFailSleep(t *testing.T) {
	t.Parallel()
	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	ctx := context.Background()

	res, _, err := run(t, ctx, reg, "echo", `{"a":[1,2]}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":[1,2]}`, string(res))

	_, _, err = run(t, ctx, reg, "fail", `{"message":"nope"}`)
	require.EqualError(t, err, "nope")
	require.False(t, worker.IsPermanent(err))
	_, _, err = run(t, ctx, reg, "fail", `{"message":"never","permanent":true}`)
	require.True(t, worker.IsPermanent(err))

	res, _, err = run(t, ctx, reg, "sleep", `{"seconds":0.01}`)
	require.NoError(t, err)
	require.JSONEq(t, `{"slept":0.01}`, string(res))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = run(t, cctx, reg, "sleep", `{"seconds":60}`)
	require.ErrorIs(t, err, context.Canceled)
}

func TestValidator(t *testing.T) {
	t.Parallel()
	v := handlers.Validator()
	for _, tc := range []struct {
		typ, payload string
		ok           bool
	}{
		{"sleep", `{"seconds":1}`, true},
		{"sleep", `{"seconds":"x"}`, false},
		{"sleep", `{"seconds":-1}`, false},
		{"sleep", `{"secs":1}`, false},
		{"exec", `{"argv":["echo","hi"]}`, true},
		{"exec", `{"argv":[]}`, false},
		{"exec", `{"argv":["x"],"env":{"A=B":"c"}}`, false},
		{"fail", `{"message":"m"}`, true},
		{"echo", `anything-goes-for-raw-handlers`, true},
		{"custom", `{}`, true},
	} {
		err := v.Validate(tc.typ, json.RawMessage(tc.payload))
		require.Equal(t, tc.ok, err == nil, "%s %s: %v", tc.typ, tc.payload, err)
	}
}

func TestExec(t *testing.T) {
	t.Parallel()
	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{ExecAllow: []string{"sh", "true"}})
	ctx := context.Background()

	res, log, err := run(t, ctx, reg, "exec", `{"argv":["sh","-c","echo out; echo err >&2; echo $GREETING $JOBFLEET_ATTEMPT"],"env":{"GREETING":"hi"}}`)
	require.NoError(t, err)
	var r handlers.ExecResult
	require.NoError(t, json.Unmarshal(res, &r))
	require.Equal(t, 0, r.ExitCode)
	require.Contains(t, log, "out\n")
	require.Contains(t, log, "err\n")
	require.Contains(t, log, "hi 1\n")

	_, _, err = run(t, ctx, reg, "exec", `{"argv":["sh","-c","exit 3"]}`)
	require.ErrorContains(t, err, "exited with code 3")
	require.False(t, worker.IsPermanent(err), "a failing command is retried")

	_, _, err = run(t, ctx, reg, "exec", `{"argv":["rm","-rf","/"]}`)
	require.True(t, worker.IsPermanent(err))
	require.ErrorContains(t, err, `command "rm" is not on this worker's allow-list`)

	// A cancelled job stops the command (and its children) promptly.
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err = run(t, cctx, reg, "exec", `{"argv":["sh","-c","sleep 30 & sleep 30"]}`)
	require.Error(t, err)
	require.True(t, errors.Is(err, context.DeadlineExceeded))
	require.Less(t, time.Since(start), 10*time.Second)

	_, _, err = run(t, ctx, reg, "exec", `{"argv":["sh"],"dir":"/does/not/exist"}`)
	require.Error(t, err)
}
