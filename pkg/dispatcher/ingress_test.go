package dispatcher_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

type ingressEnv struct {
	*env
	in, dlq *queue.Queue
	ing     *dispatcher.Ingress
}

func setupIngress(t *testing.T) *ingressEnv {
	t.Helper()
	e := setup(t, nil)
	ctx := t.Context()
	qdb, err := sqlitequeue.OpenDB(ctx, filepath.Join(t.TempDir(), "ingress.db"), &sqlitequeue.Options{Clock: e.clk})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, qdb.Close()) })
	require.NoError(t, qdb.CreateQueue(ctx, "ingress-dlq", sqlitequeue.Config{}))
	require.NoError(t, qdb.CreateQueue(ctx, "ingress", sqlitequeue.Config{DeadLetter: "ingress-dlq", MaxReceives: 5}))
	ie := &ingressEnv{env: e}
	ie.in, err = qdb.Open(ctx, "ingress")
	require.NoError(t, err)
	ie.dlq, err = qdb.Open(ctx, "ingress-dlq")
	require.NoError(t, err)
	ie.ing = dispatcher.NewIngress(e.svc, ie.in, &dispatcher.IngressOptions{DLQ: ie.dlq, Wait: 0})
	return ie
}

func (ie *ingressEnv) send(bodies ...string) {
	ie.t.Helper()
	var es []queue.SendEntry
	for _, b := range bodies {
		es = append(es, queue.SendEntry{Body: []byte(b), Attributes: map[string]string{"producer": "billing"}})
	}
	res, err := ie.in.Send(ie.t.Context(), es...)
	require.NoError(ie.t, err)
	for _, r := range res {
		require.NoError(ie.t, r.Err)
	}
}

func (ie *ingressEnv) all() []*job.Job {
	ie.t.Helper()
	p, err := ie.store.List(ie.t.Context(), jobstore.ListQuery{})
	require.NoError(ie.t, err)
	return p.Jobs
}

func (ie *ingressEnv) deadLetters() []*queue.Message {
	ie.t.Helper()
	msgs, err := ie.dlq.Receive(ie.t.Context(), queue.ReceiveOptions{Max: 10})
	require.NoError(ie.t, err)
	return msgs
}

func TestIngressSubmits(t *testing.T) {
	t.Parallel()
	ie := setupIngress(t)
	ie.send(`{"type":"echo","payload":{"n":1}}`, `{"type":"sleep","payload":{"seconds":1},"key":"k1"}`)
	res, err := ie.ing.Poll(t.Context())
	require.NoError(t, err)
	require.Equal(t, dispatcher.IngressResult{Received: 2, Submitted: 2}, res)
	jobs := ie.all()
	require.Len(t, jobs, 2)
	d, err := ie.in.Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, queue.Depth{}, d, "ingress messages deleted once stored and enqueued")
	w, err := ie.work.Depth(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(2), w.Visible)
}

// A message received again after its job was stored (the consumer died
// before deleting it) finds its job: the id derives from the message.
func TestIngressRedeliveryMakesNoSecondJob(t *testing.T) {
	t.Parallel()
	ie := setupIngress(t)
	ie.send(`{"type":"echo"}`)
	msgs, err := ie.in.Receive(t.Context(), queue.ReceiveOptions{Max: 1})
	require.NoError(t, err)
	// The first consumer stored the job and died before deleting the message.
	id := job.DerivedID(msgs[0].SentAt, []byte(msgs[0].ID))
	_, err = ie.svc.Submit(t.Context(), dispatcher.Request{Submission: job.Submission{Type: "echo"}, ID: id, Source: "ingress"})
	require.NoError(t, err)
	_, err = ie.in.ChangeVisibility(t.Context(), queue.VisibilityChange{Handle: msgs[0].Handle})
	require.NoError(t, err)

	res, err := ie.ing.Poll(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, res.Submitted)
	jobs := ie.all()
	require.Len(t, jobs, 1)
	require.Equal(t, id, jobs[0].ID)
}

func TestIngressRejectsBadMessages(t *testing.T) {
	t.Parallel()
	ie := setupIngress(t)
	_, err := ie.svc.Submit(t.Context(), dispatcher.Request{Submission: job.Submission{Type: "echo", Key: "held", Payload: json.RawMessage(`1`)}})
	require.NoError(t, err)
	ie.send(
		`{"type":`,                                   // not JSON
		`{"type":"echo","priority":9}`,               // unknown field
		`{"type":"mystery"}`,                         // unknown type
		`{"type":"sleep","payload":{"seconds":"x"}}`, // bad payload for the type
		`{"type":"echo","key":"held","payload":2}`,   // key held with another payload
		`{"type":"echo","payload_ref":"payloads/none.json"}`,
		`{"type":"echo","payload":"fine"}`,
	)
	res, err := ie.ing.Poll(t.Context())
	require.NoError(t, err)
	require.Equal(t, dispatcher.IngressResult{Received: 7, Submitted: 1, Rejected: 6}, res)
	dl := ie.deadLetters()
	require.Len(t, dl, 6)
	reasons := map[string]string{}
	for _, m := range dl {
		require.Equal(t, "billing", m.Attributes["producer"], "the producer's attributes are kept")
		reasons[string(m.Body)] = m.Attributes["code"] + ": " + m.Attributes["reason"]
	}
	require.Contains(t, reasons[`{"type":`], "invalid_argument")
	require.Contains(t, reasons[`{"type":"echo","priority":9}`], "priority: unknown field")
	require.Contains(t, reasons[`{"type":"mystery"}`], `no handler is registered for type "mystery"`)
	require.Contains(t, reasons[`{"type":"sleep","payload":{"seconds":"x"}}`], "payload")
	require.Contains(t, reasons[`{"type":"echo","key":"held","payload":2}`], "already_exists")
	require.Contains(t, reasons[`{"type":"echo","payload_ref":"payloads/none.json"}`], "no blob")
	require.Len(t, ie.all(), 2, "the good message still made its job")

	// jobfleet_submissions_rejected_total counts each rejected message
	// once, by reason: the two that do not decode as malformed, the three
	// Service.Submit refuses as invalid, the key conflict as key_conflict.
	require.Equal(t, 2.0, testutil.ToFloat64(ie.m.Rejected.WithLabelValues("ingress", "malformed")))
	require.Equal(t, 3.0, testutil.ToFloat64(ie.m.Rejected.WithLabelValues("ingress", "invalid")))
	require.Equal(t, 1.0, testutil.ToFloat64(ie.m.Rejected.WithLabelValues("ingress", "key_conflict")))
	require.Equal(t, 3, testutil.CollectAndCount(ie.m.Rejected), "no other source or reason")
}

func TestIngressPayloadRef(t *testing.T) {
	t.Parallel()
	ie := setupIngress(t)
	_, err := ie.bucket.PutBytes(t.Context(), "uploads/big.json", []byte(`{"big":true}`), "application/json")
	require.NoError(t, err)
	ie.send(`{"type":"echo","payload_ref":"uploads/big.json"}`)
	res, err := ie.ing.Poll(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, res.Submitted)
	j := ie.all()[0]
	require.Equal(t, "uploads/big.json", j.PayloadRef)
	require.Nil(t, j.Payload)
}

func TestIngressLoop(t *testing.T) {
	t.Parallel()
	ie := setupIngress(t)
	require.NoError(t, ie.ing.Start(t.Context()))
	ie.send(`{"type":"echo"}`)
	require.Eventually(t, func() bool { return len(ie.all()) == 1 }, 10*time.Second, 5*time.Millisecond)
	ie.ing.Stop()
	ie.ing.Stop()
}
