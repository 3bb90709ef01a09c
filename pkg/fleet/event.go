package fleet

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// Event sources and type, as in an EventBridge envelope.
const (
	SourceECS       = "aws.ecs"
	SourceLocal     = "jobfleet.local"
	DetailTypeTask  = "ECS Task State Change"
	maxEventSize    = 256 << 10
	maxEventIDBytes = 2048
)

// Event is a worker's state change: the fields jobfleet reads from an "ECS
// Task State Change" event.
type Event struct {
	EventID       string    // envelope id (differs between duplicates)
	Source        string    // aws.ecs or jobfleet.local
	Time          time.Time // envelope time
	WorkerID      string    // detail.taskArn
	Cluster       string    // detail.clusterArn
	LastStatus    string
	DesiredStatus string
	StopCode      string // detail.stopCode
	Reason        string // detail.stoppedReason
	// ExitCode is the exit code of the first container that exited
	// non-zero, else of the first that has one; nil
	// when no container ran to an exit (e.g. it never started).
	ExitCode        *int
	ContainerReason string // the container's reason, e.g. "OutOfMemoryError: ..."
	Health          string
	StartedBy       string
	Group           string
	CreatedAt       time.Time
	StartedAt       time.Time
	StoppingAt      time.Time
	StoppedAt       time.Time
	Version         int64 // detail.version: orders one worker's events; duplicates share it
}

// Stopped reports whether the worker has stopped.
func (e Event) Stopped() bool { return e.LastStatus == StatusStopped }

// Stopping reports whether the worker has been told to stop but may still
// run (a Spot interruption notice arrives about two minutes ahead).
func (e Event) Stopping() bool { return e.DesiredStatus == StatusStopped && !e.Stopped() }

type envelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account,omitempty"`
	Time       string          `json:"time"`
	Region     string          `json:"region,omitempty"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

type detail struct {
	TaskArn       string       `json:"taskArn"`
	ClusterArn    string       `json:"clusterArn,omitempty"`
	LastStatus    string       `json:"lastStatus"`
	DesiredStatus string       `json:"desiredStatus"`
	StopCode      string       `json:"stopCode,omitempty"`
	StoppedReason string       `json:"stoppedReason,omitempty"`
	HealthStatus  string       `json:"healthStatus,omitempty"`
	StartedBy     string       `json:"startedBy,omitempty"`
	Group         string       `json:"group,omitempty"`
	CreatedAt     string       `json:"createdAt,omitempty"`
	StartedAt     string       `json:"startedAt,omitempty"`
	StoppingAt    string       `json:"stoppingAt,omitempty"`
	StoppedAt     string       `json:"stoppedAt,omitempty"`
	Version       json.Number  `json:"version,omitempty"`
	Containers    []container  `json:"containers,omitempty"`
	Attachments   []attachment `json:"attachments,omitempty"`
}

type container struct {
	Name       string `json:"name,omitempty"`
	LastStatus string `json:"lastStatus,omitempty"`
	ExitCode   *int   `json:"exitCode,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

type attachment struct {
	Type    string `json:"type"`
	Details []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"details"`
}

// ParseEvent parses an EventBridge "ECS Task State Change" event (from ECS,
// or from procfleet). Unknown fields are ignored. A malformed event, or one
// of another type, is errcode.InvalidArgument with the reason.
func ParseEvent(body []byte) (Event, error) {
	bad := func(format string, args ...any) (Event, error) {
		return Event{}, errcode.New(errcode.InvalidArgument, "fleet event: "+format, args...)
	}
	if len(body) > maxEventSize {
		return bad("%d bytes; the limit is %d", len(body), maxEventSize)
	}
	if !utf8.Valid(body) {
		return bad("not valid UTF-8")
	}
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return bad("not an EventBridge event: %v", err)
	}
	if env.DetailType != DetailTypeTask {
		return bad("detail-type %q is not %q", env.DetailType, DetailTypeTask)
	}
	if env.Source != SourceECS && env.Source != SourceLocal {
		return bad("source %q is not %s or %s", env.Source, SourceECS, SourceLocal)
	}
	var d detail
	if len(env.Detail) == 0 {
		return bad("no detail")
	}
	if err := json.Unmarshal(env.Detail, &d); err != nil {
		return bad("detail: %v", err)
	}
	if d.TaskArn == "" || len(d.TaskArn) > maxEventIDBytes {
		return bad("detail.taskArn is missing or too long")
	}
	if d.LastStatus == "" {
		return bad("detail.lastStatus is missing")
	}
	e := Event{
		EventID:       env.ID,
		Source:        env.Source,
		WorkerID:      d.TaskArn,
		Cluster:       d.ClusterArn,
		LastStatus:    d.LastStatus,
		DesiredStatus: d.DesiredStatus,
		StopCode:      d.StopCode,
		Reason:        d.StoppedReason,
		Health:        d.HealthStatus,
		StartedBy:     d.StartedBy,
		Group:         d.Group,
	}
	var err error
	parse := func(field, v string) time.Time {
		if v == "" || err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339Nano, v)
		if perr != nil {
			err = fmt.Errorf("%s: %w", field, perr)
		}
		return t.UTC()
	}
	e.Time = parse("time", env.Time)
	e.CreatedAt = parse("detail.createdAt", d.CreatedAt)
	e.StartedAt = parse("detail.startedAt", d.StartedAt)
	e.StoppingAt = parse("detail.stoppingAt", d.StoppingAt)
	e.StoppedAt = parse("detail.stoppedAt", d.StoppedAt)
	if err != nil {
		return bad("%v", err)
	}
	if d.Version != "" {
		v, perr := strconv.ParseInt(string(d.Version), 10, 64)
		if perr != nil {
			return bad("detail.version %q is not an integer", d.Version)
		}
		e.Version = v
	}
	// The container that tells why: the first that exited non-zero (an init
	// container's or a sidecar's 0 says nothing), else the first with an
	// exit code.
	for _, c := range d.Containers {
		if c.ExitCode != nil && (e.ExitCode == nil || *e.ExitCode == 0 && *c.ExitCode != 0) {
			code := *c.ExitCode
			e.ExitCode = &code
			e.ContainerReason = c.Reason
		}
		if e.ContainerReason == "" {
			e.ContainerReason = c.Reason
		}
	}
	return e, nil
}

// Marshal returns e as an EventBridge "ECS Task State Change" event, the
// shape ParseEvent reads. procfleet emits events this way.
func (e Event) Marshal() []byte {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	d := detail{
		TaskArn:       e.WorkerID,
		ClusterArn:    e.Cluster,
		LastStatus:    e.LastStatus,
		DesiredStatus: e.DesiredStatus,
		StopCode:      e.StopCode,
		StoppedReason: e.Reason,
		HealthStatus:  e.Health,
		StartedBy:     e.StartedBy,
		Group:         e.Group,
		CreatedAt:     ts(e.CreatedAt),
		StartedAt:     ts(e.StartedAt),
		StoppingAt:    ts(e.StoppingAt),
		StoppedAt:     ts(e.StoppedAt),
		Version:       json.Number(strconv.FormatInt(e.Version, 10)),
	}
	if e.ExitCode != nil || e.ContainerReason != "" {
		d.Containers = []container{{Name: "worker", LastStatus: e.LastStatus, ExitCode: e.ExitCode, Reason: e.ContainerReason}}
	}
	db, _ := json.Marshal(d)
	src := e.Source
	if src == "" {
		src = SourceLocal
	}
	b, _ := json.Marshal(envelope{
		Version: "0", ID: e.EventID, DetailType: DetailTypeTask, Source: src,
		Time: ts(e.Time), Resources: []string{e.WorkerID}, Detail: db,
	})
	return b
}
