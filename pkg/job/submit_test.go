package job_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

func TestSubmissionValidate(t *testing.T) {
	t.Parallel()
	limits := job.DefaultLimits
	limits.KnownType = func(s string) bool { return s == "echo" || s == "sleep" }
	limits.MaxPayload = 100
	runAt := t0.Add(400 * 24 * time.Hour)
	soon := t0.Add(time.Hour)
	tests := []struct {
		name  string
		sub   job.Submission
		field string // "" = valid
		msg   string
	}{
		{"minimal", job.Submission{Type: "echo"}, "", ""},
		{"full", job.Submission{Type: "sleep", Payload: json.RawMessage(`{"seconds":1}`), Key: "order-42/a:b@c", MaxAttempts: 3, Timeout: job.Duration(time.Minute), RunAt: &soon}, "", ""},
		{"missing type", job.Submission{}, "type", "is required"},
		{"bad type name", job.Submission{Type: "9lives"}, "type", "starting with a letter"},
		{"type with space", job.Submission{Type: "a b"}, "type", "letters, digits"},
		{"unknown type", job.Submission{Type: "mystery"}, "type", `no handler is registered for type "mystery"`},
		{"payload not json", job.Submission{Type: "echo", Payload: json.RawMessage(`{"a":`)}, "payload", "not valid JSON"},
		{"payload bad utf8", job.Submission{Type: "echo", Payload: json.RawMessage("\"\xff\"")}, "payload", "UTF-8"},
		{"payload too big", job.Submission{Type: "echo", Payload: json.RawMessage(`"` + strings.Repeat("x", 200) + `"`)}, "payload", "the limit is 100"},
		{"payload and ref", job.Submission{Type: "echo", Payload: json.RawMessage(`1`), PayloadRef: "x"}, "payload_ref", "not be given together"},
		{"key too long", job.Submission{Type: "echo", Key: strings.Repeat("k", 201)}, "key", "the limit is 200"},
		{"key with space", job.Submission{Type: "echo", Key: "a b"}, "key", "printable ASCII"},
		{"key with unicode", job.Submission{Type: "echo", Key: "ключ"}, "key", "printable ASCII"},
		{"key with control", job.Submission{Type: "echo", Key: "a\nb"}, "key", "printable ASCII"},
		{"negative attempts", job.Submission{Type: "echo", MaxAttempts: -1}, "max_attempts", "at least 1"},
		{"too many attempts", job.Submission{Type: "echo", MaxAttempts: 1000}, "max_attempts", "the limit is 100"},
		{"negative timeout", job.Submission{Type: "echo", Timeout: -1}, "timeout", "positive"},
		{"tiny timeout", job.Submission{Type: "echo", Timeout: job.Duration(time.Millisecond)}, "timeout", "at least 1s"},
		{"timeout over cap", job.Submission{Type: "echo", Timeout: job.Duration(5 * time.Hour)}, "timeout", "duration cap is 4h0m0s"},
		{"delay and run_at", job.Submission{Type: "echo", Delay: job.Duration(time.Second), RunAt: &soon}, "delay", "not both"},
		{"negative delay", job.Submission{Type: "echo", Delay: job.Duration(-time.Second)}, "delay", "not be negative"},
		{"run_at too far", job.Submission{Type: "echo", RunAt: &runAt}, "run_at", "ahead"},
		{"negative start_within", job.Submission{Type: "echo", StartWithin: -1}, "start_within", "positive"},
		{"tiny start_within", job.Submission{Type: "echo", StartWithin: job.Duration(time.Millisecond)}, "start_within", "at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub := tc.sub
			err := sub.Validate(limits, t0)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.True(t, errors.Is(err, errcode.InvalidArgument))
			var ve *job.ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, tc.field, ve.Problems[0].Field, "%v", err)
			require.Contains(t, ve.Problems[0].Detail, tc.msg)
		})
	}
}

func TestSubmissionValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	sub := job.Submission{Type: "", Key: "a b", MaxAttempts: -3, Payload: json.RawMessage("nope")}
	err := sub.Validate(job.DefaultLimits, t0)
	var ve *job.ValidationError
	require.ErrorAs(t, err, &ve)
	var fields []string
	for _, p := range ve.Problems {
		fields = append(fields, p.Field)
	}
	require.Equal(t, []string{"type", "payload", "key", "max_attempts"}, fields)
}

func TestSubmissionJSON(t *testing.T) {
	t.Parallel()
	var s job.Submission
	require.NoError(t, json.Unmarshal([]byte(`{"type":"sleep","payload":{"seconds":2},"timeout":"1m30s","delay":5}`), &s))
	require.Equal(t, job.Duration(90*time.Second), s.Timeout)
	require.Equal(t, job.Duration(5*time.Second), s.Delay)
	require.Error(t, json.Unmarshal([]byte(`{"timeout":"soon"}`), &s))
	require.Error(t, json.Unmarshal([]byte(`{"timeout":true}`), &s))
	require.Error(t, json.Unmarshal([]byte(`{"delay":1e300}`), &s))
	b, err := json.Marshal(job.Duration(90 * time.Second))
	require.NoError(t, err)
	require.Equal(t, `"1m30s"`, string(b))
}

func TestPayloadHash(t *testing.T) {
	t.Parallel()
	a := job.PayloadHash(json.RawMessage(`{"a":1}`), "")
	require.Equal(t, a, job.PayloadHash(json.RawMessage(`{"a":1}`), ""))
	require.NotEqual(t, a, job.PayloadHash(json.RawMessage(`{"a":2}`), ""))
	require.NotEqual(t, a, job.PayloadHash(nil, `{"a":1}`))
	// Whitespace differences vanish once Validate compacts the payload.
	s1 := job.Submission{Type: "echo", Payload: json.RawMessage(`{ "a" : 1 }`)}
	require.NoError(t, s1.Validate(job.DefaultLimits, t0))
	require.Equal(t, a, job.PayloadHash(s1.Payload, ""))
}

func TestIDs(t *testing.T) {
	t.Parallel()
	a, b := job.NewID(t0), job.NewID(t0)
	require.True(t, job.ValidID(a))
	require.Less(t, a, b, "ids are monotonic within a process")
	require.Less(t, job.NewID(t0), job.NewID(t0.Add(time.Millisecond)))
	require.False(t, job.ValidID("01ARZ3NDEKTSV4RRFFQ69G5FA"))
	require.False(t, job.ValidID("../../../etc/passwd........"))
	require.False(t, job.ValidID(""))

	d1 := job.DerivedID(t0, []byte("msg-1"))
	require.True(t, job.ValidID(d1))
	require.Equal(t, d1, job.DerivedID(t0, []byte("msg-1")), "same message, same id")
	require.NotEqual(t, d1, job.DerivedID(t0, []byte("msg-2")))
}

func TestMessage(t *testing.T) {
	t.Parallel()
	id := job.NewID(t0)
	m := job.Message{ID: id, Attempt: 3}
	got, err := job.DecodeMessage(m.Encode())
	require.NoError(t, err)
	require.Equal(t, m, got)
	for _, bad := range []string{``, `{}`, `{"id":"x","attempt":1}`, `{"id":"` + id + `","attempt":-1}`, `[1]`} {
		_, err := job.DecodeMessage([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
}
