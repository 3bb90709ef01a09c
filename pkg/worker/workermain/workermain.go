// Package workermain is the body of a worker binary: configuration from
// JOBFLEET_* variables, the profile's backends, the worker's identity, the
// /health and /metrics server, and signal handling (first SIGTERM or
// SIGINT drains, a second hands running jobs back at once). The stock
// jobfleet-worker is a few lines over it, and so is a worker serving your
// own job types:
//
//	func main() {
//		err := workermain.Run(context.Background(), os.Getenv, func(cfg config.Config, reg *worker.Registry) error {
//			worker.Register(reg, "resize", resize) // func(ctx, *worker.Job, ResizePayload) (ResizeResult, error)
//			return nil
//		})
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//	}
//
// Add the type to the dispatcher's JOBFLEET_JOB_TYPES so it accepts jobs of it.
package workermain

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/daemon"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// Run runs a worker until it drains (signal) or goes idle. setup registers
// the handlers it serves.
func Run(ctx context.Context, getenv func(string) string, setup func(config.Config, *worker.Registry) error) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := daemon.Logger("worker", cfg.LogLevel)
	reg := worker.NewRegistry()
	if err := setup(cfg, reg); err != nil {
		return fmt.Errorf("register handlers: %w", err)
	}
	id, err := worker.Identity(ctx, getenv)
	if err != nil {
		return err
	}
	m := metrics.New()
	b, err := profile.Open(ctx, cfg, m)
	if err != nil {
		return err
	}
	defer b.Close()

	w, err := worker.New(id, b.Store, b.Work, b.Blob, reg, &worker.Options{
		DLQ:                b.WorkDLQ,
		Policy:             cfg.Policy(),
		Concurrency:        cfg.Concurrency,
		Heartbeat:          cfg.Heartbeat,
		Visibility:         cfg.Visibility,
		IdleTimeout:        cfg.IdleTimeout,
		FreeMemoryWhenIdle: true,
		DrainTimeout:       cfg.DrainTimeout,
		InlineLimit:        cfg.InlineLimit,
		RetryBase:          cfg.RetryBase,
		RetryMax:           cfg.RetryMax,
		Logger:             log,
		Metrics:            m,
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(rw http.ResponseWriter, _ *http.Request) {
		if !w.Healthy() {
			http.Error(rw, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = rw.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", m.Handler())
	srv, err := daemon.Listen(cfg.WorkerAddr, mux, nil)
	if err != nil {
		return err
	}
	log.Info("worker ready", append([]any{"owner", id, "addr", srv.Addr()}, b.LogAttrs()...)...)

	soft, hard, stop := daemon.Signals(ctx)
	defer stop()
	if err := w.Start(hard); err != nil {
		return err
	}
	select {
	case <-soft.Done():
		log.Info("signal received: draining")
	case <-w.Done():
	}
	w.Stop()
	return srv.Shutdown(5 * time.Second)
}
