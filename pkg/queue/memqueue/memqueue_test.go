package memqueue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/memqueue"
)

// The same calls on the same clock give the same ids and handles: a
// simulation replays exactly.
func TestReproducible(t *testing.T) {
	t.Parallel()
	run := func() []string {
		ctx := context.Background()
		clk := clock.NewFake(epoch)
		b := memqueue.New(&memqueue.Options{Clock: clk})
		defer b.Close()
		require.NoError(t, b.CreateQueue(ctx, "q", memqueue.Config{Visibility: time.Second}))
		q, err := b.Open(ctx, "q")
		require.NoError(t, err)
		var out []string
		for i := range 5 {
			res, err := q.Send(ctx, queue.SendEntry{Body: fmt.Appendf(nil, "m%d", i)})
			require.NoError(t, err)
			out = append(out, res[0].ID)
			clk.Advance(time.Millisecond)
		}
		for range 3 {
			msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: 2})
			require.NoError(t, err)
			for _, m := range msgs {
				out = append(out, m.ID+" "+m.Handle+" "+string(m.Body))
			}
			clk.Advance(2 * time.Second)
		}
		return out
	}
	require.Equal(t, run(), run())
}

func TestCreateQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := memqueue.New(nil)
	for _, c := range []struct {
		name string
		cfg  memqueue.Config
		code errcode.Code
	}{
		{"bad name!", memqueue.Config{}, errcode.InvalidArgument},
		{"q", memqueue.Config{MaxReceives: 3}, errcode.InvalidArgument},
		{"q", memqueue.Config{DeadLetter: "q", MaxReceives: 3}, errcode.InvalidArgument},
		{"q", memqueue.Config{DeadLetter: "dlq", MaxReceives: 0}, errcode.InvalidArgument},
		{"q", memqueue.Config{DeadLetter: "missing", MaxReceives: 3}, errcode.NotFound},
		{"q", memqueue.Config{Visibility: queue.MaxVisibility + time.Second}, errcode.InvalidArgument},
	} {
		err := b.CreateQueue(ctx, c.name, c.cfg)
		require.Equal(t, c.code, errcode.Of(err), "%s %+v: %v", c.name, c.cfg, err)
	}
	require.NoError(t, b.CreateQueue(ctx, "q", memqueue.Config{}))
	require.NoError(t, b.CreateQueue(ctx, "q", memqueue.Config{Visibility: time.Minute}), "idempotent")
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
	_, err := b.Open(ctx, "q")
	require.Equal(t, errcode.Closed, errcode.Of(err))
	require.Equal(t, errcode.Closed, errcode.Of(b.CreateQueue(ctx, "r", memqueue.Config{})))
}

func ExampleNew() {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	b := memqueue.New(&memqueue.Options{Clock: clk})
	defer b.Close()
	if err := b.CreateQueue(ctx, "work-dlq", memqueue.Config{}); err != nil {
		panic(err)
	}
	if err := b.CreateQueue(ctx, "work", memqueue.Config{Visibility: 30 * time.Second, DeadLetter: "work-dlq", MaxReceives: 2}); err != nil {
		panic(err)
	}
	work, err := b.Open(ctx, "work")
	if err != nil {
		panic(err)
	}
	if _, err := work.Send(ctx, queue.SendEntry{Body: []byte(`{"id":"x","attempt":0}`)}); err != nil {
		panic(err)
	}
	for range 3 {
		msgs, _ := work.Receive(ctx, queue.ReceiveOptions{})
		if len(msgs) == 0 {
			fmt.Println("moved to the dead-letter queue")
			break
		}
		fmt.Println("received, count", msgs[0].ReceiveCount)
		clk.Advance(30 * time.Second) // not deleted: it comes back
	}
	// Output:
	// received, count 1
	// received, count 2
	// moved to the dead-letter queue
}
