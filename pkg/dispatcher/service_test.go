package dispatcher_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// Concurrent single submissions share their store and queue writes (group
// commit); each still gets its own answer: new jobs their own, same-key
// submissions one shared job, a conflicting payload its conflict, and every
// queued job exactly one work message.
func TestConcurrentSubmits(t *testing.T) {
	t.Parallel()
	e := setup(t, nil)
	const n = 64
	results := make([]dispatcher.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sub := job.Submission{Type: "echo", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
			switch {
			case i%4 == 0:
				sub.Key, sub.Payload = "shared", json.RawMessage(`{"same":true}`)
			case i == 1:
				sub.Key, sub.Payload = "shared", json.RawMessage(`{"same":false}`)
			}
			res, err := e.svc.Submit(t.Context(), dispatcher.Request{Submission: sub})
			require.NoError(t, err)
			results[i] = res[0]
		})
	}
	wg.Wait()

	ids := map[string]bool{}
	var shared string
	created := 0
	for i, r := range results {
		switch {
		case i == 1:
			// Either it claimed the key first (and the others, with
			// another payload, conflict), or it conflicts with the holder.
			if r.Err != nil {
				require.ErrorIs(t, r.Err, dispatcher.ErrKeyConflict)
				continue
			}
		case i%4 == 0:
			if r.Err != nil {
				require.ErrorIs(t, r.Err, dispatcher.ErrKeyConflict, "only when #1 claimed the key first")
				continue
			}
			if shared == "" {
				shared = r.Job.ID
			}
			require.Equal(t, shared, r.Job.ID, "one job per key")
		default:
			require.NoError(t, r.Err)
			require.True(t, r.Created)
			require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(r.Job.Payload), "its own job")
		}
		if r.Created {
			created++
			require.False(t, ids[r.Job.ID], "a new id per created job")
			ids[r.Job.ID] = true
		}
	}
	require.Equal(t, n-n/4, created, "every unkeyed submission and one keyed one created a job")
	msgs := map[string]int{}
	for {
		got, err := e.work.Receive(t.Context(), queue.ReceiveOptions{Max: queue.MaxBatch})
		require.NoError(t, err)
		if len(got) == 0 {
			break
		}
		for _, m := range got {
			jm, err := job.DecodeMessage(m.Body)
			require.NoError(t, err)
			msgs[jm.ID]++
		}
	}
	require.Len(t, msgs, created, "a message per created job")
	for id, c := range msgs {
		require.True(t, ids[id])
		require.Equal(t, 1, c, "one message for job %s", id)
	}
}
