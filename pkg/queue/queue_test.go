package queue_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// recorder is a Driver that records the batches it is sent.
type recorder struct {
	queue.Driver
	batches [][]queue.SendEntry
}

func (r *recorder) Send(_ context.Context, es []queue.SendEntry) ([]queue.SendResult, error) {
	r.batches = append(r.batches, es)
	return make([]queue.SendResult, len(es)), nil
}

func (r *recorder) Name() string { return "rec" }

func TestSendSplitsByCountAndBytes(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	q := queue.New(r)
	var es []queue.SendEntry
	for range 23 {
		es = append(es, queue.SendEntry{Body: []byte("x")})
	}
	res, err := q.Send(context.Background(), es...)
	require.NoError(t, err)
	require.Len(t, res, 23)
	require.Equal(t, []int{10, 10, 3}, sizes(r.batches))

	r.batches = nil
	big := strings.Repeat("b", 400<<10)
	_, err = q.Send(context.Background(),
		queue.SendEntry{Body: []byte(big)}, queue.SendEntry{Body: []byte(big)}, queue.SendEntry{Body: []byte(big)})
	require.NoError(t, err)
	require.Equal(t, []int{2, 1}, sizes(r.batches), "no batch over 1 MiB in total")
}

func sizes(bs [][]queue.SendEntry) []int {
	var out []int
	for _, b := range bs {
		out = append(out, len(b))
	}
	return out
}

func TestSendValidatesEachEntry(t *testing.T) {
	t.Parallel()
	q := queue.New(&recorder{})
	exact := strings.Repeat("x", queue.MaxMessageSize-len("k")-len("String")-len("v"))
	res, err := q.Send(context.Background(),
		queue.SendEntry{Body: []byte("ok\ttab\nnewline")},
		queue.SendEntry{Body: []byte("nul\x00")},
		queue.SendEntry{Body: []byte("x"), Attributes: map[string]string{"aws.thing": "v"}},
		queue.SendEntry{Body: []byte("x"), Attributes: map[string]string{"Amazon.x": "v"}},
		queue.SendEntry{Body: []byte(exact), Attributes: map[string]string{"k": "v"}},
		queue.SendEntry{Body: []byte(exact + "y"), Attributes: map[string]string{"k": "v"}},
		queue.SendEntry{Body: []byte("x"), Attributes: map[string]string{"a..b": "v"}},
		queue.SendEntry{Body: []byte("x"), Attributes: map[string]string{"k": "bell\a"}},
	)
	require.NoError(t, err)
	want := []bool{true, false, false, false, true, false, false, false}
	for i, r := range res {
		require.Equal(t, want[i], r.Err == nil, "entry %d: %v", i, r.Err)
		if r.Err != nil {
			require.Equal(t, errcode.InvalidArgument, errcode.Of(r.Err))
		}
	}
}
