package dispatcher

import (
	"encoding/json"
	"time"

	"github.com/jobfleet/jobfleet/pkg/job"
)

// JobView is a job as the API shows it (GET /v1/jobs/{id}, list pages,
// submit and cancel answers); the Go client decodes the same struct.
//
// It is the job record without the fields that only mean something to the
// protocol (rev, due_at, resend_at, resends, dead_letters, payload_hash). A payload kept
// inline is in Payload; a large one lives in the blob store under
// PayloadRef (PayloadSize says how big it is). A SUCCEEDED job has a
// ResultURL that serves its result; its Result is also inline when it was
// stored inline. LogsURL is set once the job has started (attempt ≥ 1).
// Times are UTC; zero times are left out.
type JobView struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Key             string          `json:"key,omitempty"`
	Status          job.Status      `json:"status"`
	Attempt         int             `json:"attempt"`
	Failures        int             `json:"failures"`
	MaxAttempts     int             `json:"max_attempts"`
	Timeout         job.Duration    `json:"timeout"`
	Owner           string          `json:"owner,omitempty"`
	LeaseUntil      time.Time       `json:"lease_until,omitzero"`
	CancelRequested bool            `json:"cancel_requested"`
	RunAt           time.Time       `json:"run_at,omitzero"`
	StartBy         time.Time       `json:"start_by,omitzero"` // fails with a "provisioner:" error if not started by then
	Detail          string          `json:"detail,omitempty"`
	Progress        json.RawMessage `json:"progress,omitempty"`
	Error           string          `json:"error,omitempty"`
	CreatedAt       time.Time       `json:"created_at"`
	UpdatedAt       time.Time       `json:"updated_at"`
	StartedAt       time.Time       `json:"started_at,omitzero"`
	FinishedAt      time.Time       `json:"finished_at,omitzero"`
	// ExpiresAt is when a terminal job's record will be deleted.
	ExpiresAt time.Time     `json:"expires_at,omitzero"`
	History   []job.Attempt `json:"history,omitempty"`

	Payload     json.RawMessage `json:"payload,omitempty"`
	PayloadRef  string          `json:"payload_ref,omitempty"`
	PayloadSize int64           `json:"payload_size"`
	Result      json.RawMessage `json:"result,omitempty"`
	ResultURL   string          `json:"result_url,omitempty"`
	LogsURL     string          `json:"logs_url,omitempty"`

	// Deduplicated is set only in the answer to a submission: an active
	// job already held the key (with the same payload), and this is it.
	Deduplicated bool `json:"deduplicated,omitempty"`
}

// JobPath is the API path of the job with id.
func JobPath(id string) string { return "/v1/jobs/" + id }

// ViewOf returns the view of j.
func ViewOf(j *job.Job) *JobView {
	v := &JobView{
		ID:              j.ID,
		Type:            j.Type,
		Key:             j.Key,
		Status:          j.Status,
		Attempt:         j.Attempt,
		Failures:        j.Failures,
		MaxAttempts:     j.MaxAttempts,
		Timeout:         j.Timeout,
		Owner:           j.Owner,
		LeaseUntil:      utc(j.LeaseUntil),
		CancelRequested: j.CancelRequested,
		RunAt:           utc(j.RunAt),
		StartBy:         utc(j.StartBy),
		Detail:          j.Detail,
		Progress:        j.Progress,
		Error:           j.Error,
		CreatedAt:       utc(j.CreatedAt),
		UpdatedAt:       utc(j.UpdatedAt),
		StartedAt:       utc(j.StartedAt),
		FinishedAt:      utc(j.FinishedAt),
		ExpiresAt:       utc(j.ExpiresAt),
		History:         j.History,
		Payload:         j.Payload,
		PayloadRef:      j.PayloadRef,
		PayloadSize:     j.PayloadSize,
	}
	if j.Status == job.Succeeded {
		v.ResultURL = JobPath(j.ID) + "/result"
		if j.ResultRef == "" {
			v.Result = j.Result
		}
	}
	if j.Attempt > 0 {
		v.LogsURL = JobPath(j.ID) + "/logs"
	}
	return v
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
