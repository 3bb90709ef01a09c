package sqlitequeue_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/queue/queuetest"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Harness {
		clk := clock.NewFake(epoch)
		db, err := sqlitequeue.OpenDB(t.Context(), filepath.Join(t.TempDir(), "queue.db"), &sqlitequeue.Options{Clock: clk})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, db.Close()) })

		name := queuetest.Name(t)
		qc := sqlitequeue.Config{Visibility: cfg.Visibility}
		h := queuetest.Harness{
			Advance:  func(d time.Duration) { clk.Advance(d) },
			FakeTime: true,
			Clock:    clk,
			Open:     db.Open,
		}
		if cfg.MaxReceives > 0 {
			qc.DeadLetter, qc.MaxReceives = name+"-dlq", cfg.MaxReceives
			require.NoError(t, db.CreateQueue(t.Context(), qc.DeadLetter, sqlitequeue.Config{Visibility: cfg.Visibility}))
			h.DLQ, err = db.Open(t.Context(), qc.DeadLetter)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, h.DLQ.Close()) })
		}
		require.NoError(t, db.CreateQueue(t.Context(), name, qc))
		h.Queue, err = db.Open(t.Context(), name)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, h.Queue.Close()) })
		return h
	})
}
