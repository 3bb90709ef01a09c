package sqlitequeue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

// benchQueue opens a fresh queue on the real clock, as the services run.
func benchQueue(b *testing.B) *queue.Queue {
	b.Helper()
	ctx := context.Background()
	db, err := sqlitequeue.OpenDB(ctx, filepath.Join(b.TempDir(), "queue.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.CreateQueue(ctx, "work", sqlitequeue.Config{Visibility: time.Hour}); err != nil {
		b.Fatal(err)
	}
	q, err := db.Open(ctx, "work")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

// batch10 is ten work messages, shaped like the dispatcher's.
var batch10 = func() []queue.SendEntry {
	out := make([]queue.SendEntry, queue.MaxBatch)
	for i := range out {
		out[i] = queue.SendEntry{
			Body:       fmt.Appendf(nil, `{"id":"01J0ZQ7Y4W5K3N8D2F6H9M%04d","attempt":1}`, i),
			Attributes: map[string]string{"type": "noop"},
		}
	}
	return out
}()

func send10(b *testing.B, q *queue.Queue) {
	res, err := q.Send(context.Background(), batch10...)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range res {
		if r.Err != nil {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkSend10: one op sends a batch of 10 (one transaction).
func BenchmarkSend10(b *testing.B) {
	q := benchQueue(b)
	for b.Loop() {
		send10(b, q)
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N*queue.MaxBatch), "ns/msg")
}

// BenchmarkReceiveDelete10: one op receives a batch of 10 and deletes it
// (two transactions).
func BenchmarkReceiveDelete10(b *testing.B) {
	q := benchQueue(b)
	ctx := context.Background()
	const fill = 100 // batches sent whenever the queue runs dry, outside the timer
	for i := 0; i < b.N; i++ {
		if i%fill == 0 {
			b.StopTimer()
			for range fill {
				send10(b, q)
			}
			b.StartTimer()
		}
		msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch})
		if err != nil {
			b.Fatal(err)
		}
		if len(msgs) != queue.MaxBatch {
			b.Fatalf("received %d messages", len(msgs))
		}
		handles := make([]string, len(msgs))
		for j, m := range msgs {
			handles[j] = m.Handle
		}
		if _, err := q.Delete(ctx, handles...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N*queue.MaxBatch), "ns/msg")
}

// BenchmarkSendToWaitingReceive: one op sends one message to a receive
// waiting in the same process and waits until it has it: the queue's part
// of dispatch→start latency.
func BenchmarkSendToWaitingReceive(b *testing.B) {
	q := benchQueue(b)
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for ctx.Err() == nil {
			msgs, err := q.Receive(ctx, queue.ReceiveOptions{Wait: queue.MaxWait})
			if err != nil {
				b.Error(err)
				return
			}
			for _, m := range msgs {
				got <- struct{}{}
				if _, err := q.Delete(ctx, m.Handle); err != nil && ctx.Err() == nil {
					b.Error(err)
					return
				}
			}
		}
	}()
	one := queue.SendEntry{Body: []byte(`{"id":"01J0ZQ7Y4W5K3N8D2F6H9M0000","attempt":1}`)}
	for b.Loop() {
		if _, err := q.Send(ctx, one); err != nil {
			b.Fatal(err)
		}
		<-got
	}
	cancel()
	<-stopped
}
