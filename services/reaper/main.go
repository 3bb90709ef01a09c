// Command jobfleet-reaper keeps every accepted job moving: it reclaims jobs
// whose lease expired, re-sends lost work messages, promotes scheduled jobs,
// sends dead-lettered messages of never-started jobs again (failing a job
// whose messages keep dying), and reclaims a stopped worker's jobs as soon
// as the fleet reports it. Several reapers may run at
// once. /healthz and /metrics are served on JOBFLEET_REAPER_ADDR.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/daemon"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/reaper"
)

func main() {
	if err := run(context.Background(), os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "jobfleet-reaper:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, getenv func(string) string) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := daemon.Logger("reaper", cfg.LogLevel)
	soft, _, stop := daemon.Signals(ctx)
	defer stop()
	m := metrics.New()
	b, err := profile.Open(soft, cfg, m)
	if err != nil {
		return err
	}
	defer b.Close()

	r := reaper.New(b.Store, b.Work, &reaper.Options{
		Policy:     cfg.Policy(),
		Sweep:      cfg.Sweep,
		WorkDLQ:    b.WorkDLQ,
		Events:     b.Events,
		EventsDLQ:  b.EventsDLQ,
		OrphanPoll: b.OrphanPoll,
		Logger:     log,
		Metrics:    m,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", m.Handler())
	srv, err := daemon.Listen(cfg.ReaperAddr, mux, nil)
	if err != nil {
		return err
	}
	log.Info("reaper ready", append([]any{"addr", srv.Addr(), "sweep", cfg.Sweep.String()}, b.LogAttrs()...)...)
	if err := r.Start(soft); err != nil {
		return err
	}
	<-soft.Done()
	log.Info("signal received: stopping")
	r.Stop()
	return srv.Shutdown(5 * time.Second)
}
