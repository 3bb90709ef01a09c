package job_test

import (
	"encoding/json"
	"testing"

	"github.com/jobfleet/jobfleet/pkg/job"
)

// FuzzDecodeMessage: work messages are ours, but a queue can hold anything;
// decoding never panics and what it accepts round-trips.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(job.Message{ID: job.NewID(t0), Attempt: 3}.Encode())
	f.Add([]byte(`{"id":"x","attempt":-1}`))
	f.Add([]byte(`{"id":"01ARZ3NDEKTSV4RRFFQ69G5FAV","attempt":1e99}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := job.DecodeMessage(b)
		if err != nil {
			return
		}
		again, err := job.DecodeMessage(m.Encode())
		if err != nil || again != m {
			t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
		}
	})
}

// FuzzSubmission: any JSON a producer sends is decoded and validated
// without panicking, and what Validate accepts becomes a well-formed job.
func FuzzSubmission(f *testing.F) {
	f.Add([]byte(`{"type":"echo","payload":{"hi":1}}`))
	f.Add([]byte(`{"type":"sleep","key":"k","max_attempts":3,"timeout":"90s","delay":5}`))
	f.Add([]byte(`{"type":"x","run_at":"2030-01-02T03:04:05Z","timeout":-1}`))
	f.Add([]byte(`{"type":"x","payload":"\u0000\ud800"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s job.Submission
		if json.Unmarshal(b, &s) != nil {
			return
		}
		if s.Validate(job.DefaultLimits, t0) != nil {
			return
		}
		j := job.DefaultPolicy.New(&s, job.DefaultLimits, job.NewID(t0), t0)
		if !j.Status.Active() || j.MaxAttempts < 1 || j.Timeout <= 0 || j.DueAt.IsZero() || !job.ValidType(j.Type) {
			t.Fatalf("accepted %q as %+v", b, j)
		}
		if len(j.Payload) > 0 && !json.Valid(j.Payload) {
			t.Fatalf("payload %q is not JSON", j.Payload)
		}
	})
}
