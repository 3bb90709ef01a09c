// Package handlers holds the built-in job types the stock worker serves:
//
//   - echo: the result is the payload.
//   - sleep: {"seconds": 2.5} sleeps, reporting progress every second;
//     the result is {"slept": seconds}.
//   - fail: {"message": "...", "permanent": false} fails with the message;
//     permanent skips the retries.
//   - exec: {"argv": ["cmd", "arg"], "env": {"K": "V"}, "dir": "/path"}
//     runs a command on the worker's allow-list (JOBFLEET_EXEC_ALLOW); its
//     stdout and stderr go to the job's log; exit code 0 succeeds with
//     {"exit_code": 0}, any other fails the attempt (retried) and says the
//     code. Commands off the list fail permanently.
//
// The dispatcher registers the same handlers (with no allow-list) only to
// validate payloads before it accepts a job.
package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jobfleet/jobfleet/pkg/worker"
)

// Options configure the built-ins.
type Options struct {
	// ExecAllow lists the commands exec may run, matched exactly against
	// argv[0]; a bare name is looked up in PATH when it runs. Empty: exec
	// refuses everything.
	ExecAllow []string
}

// Register adds the built-in handlers to r.
func Register(r *worker.Registry, opts Options) {
	r.Handle("echo", worker.HandlerFunc(echo))
	worker.Register(r, "sleep", sleep)
	worker.Register(r, "fail", fail)
	allow := slices.Clone(opts.ExecAllow)
	worker.Register(r, "exec", func(ctx context.Context, j *worker.Job, p ExecPayload) (ExecResult, error) {
		return execute(ctx, j, p, allow)
	})
}

func echo(_ context.Context, j *worker.Job) (json.RawMessage, error) {
	if len(j.Payload) == 0 {
		return json.RawMessage("null"), nil
	}
	return j.Payload, nil
}

// SleepPayload is the sleep handler's payload.
type SleepPayload struct {
	Seconds float64 `json:"seconds"`
}

// Validate checks the duration.
func (p *SleepPayload) Validate() error {
	if math.IsNaN(p.Seconds) || p.Seconds < 0 || p.Seconds > 24*3600 {
		return errors.New("seconds must be between 0 and 86400")
	}
	return nil
}

// SleepResult is the sleep handler's result.
type SleepResult struct {
	Slept float64 `json:"slept"`
}

// SleepProgress is what sleep reports as progress.
type SleepProgress struct {
	Elapsed float64 `json:"elapsed"`
	Total   float64 `json:"total"`
}

func sleep(ctx context.Context, j *worker.Job, p SleepPayload) (SleepResult, error) {
	total := time.Duration(p.Seconds * float64(time.Second))
	start := time.Now()
	done := time.NewTimer(total)
	defer done.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return SleepResult{}, ctx.Err()
		case <-done.C:
			return SleepResult{Slept: p.Seconds}, nil
		case <-tick.C:
			_ = j.Progress(SleepProgress{Elapsed: time.Since(start).Seconds(), Total: p.Seconds})
		}
	}
}

// FailPayload is the fail handler's payload.
type FailPayload struct {
	Message   string `json:"message"`
	Permanent bool   `json:"permanent"`
}

func fail(_ context.Context, _ *worker.Job, p FailPayload) (struct{}, error) {
	msg := p.Message
	if msg == "" {
		msg = "failed on purpose"
	}
	if p.Permanent {
		return struct{}{}, worker.Permanent(errors.New(msg))
	}
	return struct{}{}, errors.New(msg)
}

// ExecPayload is the exec handler's payload.
type ExecPayload struct {
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env,omitempty"`
	Dir  string            `json:"dir,omitempty"`
}

// Validate checks the shape (the allow-list is the worker's to check).
func (p *ExecPayload) Validate() error {
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return errors.New("argv must name a command")
	}
	for _, a := range p.Argv {
		if strings.ContainsRune(a, 0) {
			return errors.New("argv must not contain NUL bytes")
		}
	}
	for k, v := range p.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("env: invalid variable %q", k)
		}
	}
	return nil
}

// ExecResult is the exec handler's result.
type ExecResult struct {
	ExitCode int     `json:"exit_code"`
	Seconds  float64 `json:"seconds"`
}

// execEnv is what a command inherits from the worker: enough to run, no
// secrets.
var execEnv = []string{"PATH", "HOME", "LANG", "TZ", "TMPDIR"}

func execute(ctx context.Context, j *worker.Job, p ExecPayload, allow []string) (ExecResult, error) {
	if !slices.Contains(allow, p.Argv[0]) {
		return ExecResult{}, worker.Permanent(fmt.Errorf("command %q is not on this worker's allow-list (JOBFLEET_EXEC_ALLOW=%s)", p.Argv[0], strings.Join(allow, ",")))
	}
	path, err := exec.LookPath(p.Argv[0])
	if err != nil {
		return ExecResult{}, worker.Permanent(fmt.Errorf("command %q: %w", p.Argv[0], err))
	}
	cmd := exec.Command(path, p.Argv[1:]...)
	cmd.Args[0] = p.Argv[0]
	cmd.Dir = p.Dir
	for _, k := range execEnv {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range p.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "JOBFLEET_JOB_ID="+j.ID, fmt.Sprintf("JOBFLEET_ATTEMPT=%d", j.Attempt))
	cmd.Stdout, cmd.Stderr = j.Log, j.Log
	// Its own process group, so a stop reaches its children too; and it
	// dies with the worker (as everything in an ECS task does), so a
	// killed worker's commands do not finish work that will run again.
	// (Pdeathsig follows the OS thread that started the command; the Go
	// runtime does not end threads it did not lock, so that is the worker.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return ExecResult{}, fmt.Errorf("start %q: %w", p.Argv[0], err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		// SIGTERM the group, then SIGKILL if it lingers.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		t := time.NewTimer(5 * time.Second)
		select {
		case err = <-waited:
		case <-t.C:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			err = <-waited
		}
		t.Stop()
		return ExecResult{}, fmt.Errorf("%q stopped: %w (%v)", p.Argv[0], ctx.Err(), err)
	}
	res := ExecResult{ExitCode: cmd.ProcessState.ExitCode(), Seconds: time.Since(start).Seconds()}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return res, fmt.Errorf("%q exited with code %d", p.Argv[0], res.ExitCode)
		}
		return res, fmt.Errorf("run %q: %w", p.Argv[0], err)
	}
	return res, nil
}

// Validator returns a registry holding the built-ins, for checking
// payloads (exec runs nothing through it).
func Validator() *worker.Registry {
	r := worker.NewRegistry()
	Register(r, Options{})
	return r
}
