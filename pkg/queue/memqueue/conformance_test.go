package memqueue_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/queue/memqueue"
	"github.com/jobfleet/jobfleet/pkg/queue/queuetest"
)

// epoch is where fake clocks start (with milliseconds, as kept).
var epoch = time.Date(2031, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

func TestConformance(t *testing.T) {
	t.Parallel()
	queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Harness {
		clk := clock.NewFake(epoch)
		b := memqueue.New(&memqueue.Options{Clock: clk})
		t.Cleanup(func() { require.NoError(t, b.Close()) })

		name := queuetest.Name(t)
		qc := memqueue.Config{Visibility: cfg.Visibility}
		h := queuetest.Harness{
			Advance:  func(d time.Duration) { clk.Advance(d) },
			FakeTime: true,
			Clock:    clk,
			Open:     b.Open,
		}
		var err error
		if cfg.MaxReceives > 0 {
			qc.DeadLetter, qc.MaxReceives = name+"-dlq", cfg.MaxReceives
			require.NoError(t, b.CreateQueue(t.Context(), qc.DeadLetter, memqueue.Config{Visibility: cfg.Visibility}))
			h.DLQ, err = b.Open(t.Context(), qc.DeadLetter)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, h.DLQ.Close()) })
		}
		require.NoError(t, b.CreateQueue(t.Context(), name, qc))
		h.Queue, err = b.Open(t.Context(), name)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, h.Queue.Close()) })
		return h
	})
}
