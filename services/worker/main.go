// Command jobfleet-worker runs jobs: it pulls work messages, runs the
// built-in handlers (echo, sleep, fail, exec), heartbeats, drains on SIGTERM
// (a second signal hands running jobs back at once), and exits after
// JOBFLEET_IDLE_TIMEOUT without work. /health answers 503 while draining;
// /metrics serves Prometheus metrics.
//
// To serve your own job types, build your own binary the same way: see
// pkg/worker/workermain.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/worker"
	"github.com/jobfleet/jobfleet/pkg/worker/workermain"
)

func main() {
	if err := workermain.Run(context.Background(), os.Getenv, builtins); err != nil {
		fmt.Fprintln(os.Stderr, "jobfleet-worker:", err)
		os.Exit(1)
	}
}

func builtins(cfg config.Config, reg *worker.Registry) error {
	handlers.Register(reg, handlers.Options{ExecAllow: cfg.ExecAllow})
	return nil
}
