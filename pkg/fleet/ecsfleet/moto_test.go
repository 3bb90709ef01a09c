package ecsfleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
)

// motoNumericFix makes moto's ECS answers readable by the Go SDK. moto
// 5.2.1 writes tasks[].containers[].cpu, memory and memoryReservation as
// JSON numbers where the API has strings, and the SDK then fails RunTask,
// DescribeTasks and StopTask with "expected string, got 0" (AWS_NOTES §0
// item 2, §3.3). It sits in the Deserialize step after the protocol
// deserializer is added, so it sees the raw body first and hands on a body
// with those numbers as strings. Test-only: ECS itself sends strings.
var motoNumericFix = middleware.DeserializeMiddlewareFunc("MotoECSNumericStringFix", func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
	out, md, err := next.HandleDeserialize(ctx, in)
	if err != nil {
		return out, md, err
	}
	resp, ok := out.RawResponse.(*smithyhttp.Response)
	if !ok || resp.Body == nil {
		return out, md, err
	}
	b, rerr := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if rerr != nil {
		return out, md, rerr
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if dec.Decode(&doc) == nil {
		changed := false
		fixTask := func(task any) {
			tm, _ := task.(map[string]any)
			cs, _ := tm["containers"].([]any)
			for _, c := range cs {
				cm, _ := c.(map[string]any)
				for _, k := range []string{"cpu", "memory", "memoryReservation"} {
					if n, isNum := cm[k].(json.Number); isNum {
						cm[k] = n.String()
						changed = true
					}
				}
			}
		}
		if ts, ok := doc["tasks"].([]any); ok {
			for _, task := range ts {
				fixTask(task)
			}
		}
		if task, ok := doc["task"]; ok {
			fixTask(task)
		}
		if changed {
			if nb, merr := json.Marshal(doc); merr == nil {
				b = nb
			}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return out, md, err
})

// withMotoNumericFix adds motoNumericFix to an ECS client's stack.
func withMotoNumericFix(o *ecs.Options) {
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Deserialize.Add(motoNumericFix, middleware.After)
	})
}

// motoECS supplies task fields ECS always returns and moto 5.2.1 never
// does (AWS_NOTES §1, ECS rows): createdAt, startedAt, stoppedAt and
// stopCode. moto starts a Fargate task RUNNING at once and StopTask makes
// it STOPPED at once, so this records when RunTask and StopTask answered
// and fills in those times, and stopCode UserInitiated, as ECS would for
// the same calls. It only fills fields moto left empty and changes nothing
// else, so the suite still checks that the driver maps what ECS sends; it
// stands for the backend, never for the driver.
type motoECS struct {
	c *ecs.Client

	mu      sync.Mutex
	created map[string]time.Time
	stopped map[string]time.Time
}

var _ ecsfleet.API = (*motoECS)(nil)

func newMotoECS(c *ecs.Client) *motoECS {
	return &motoECS{c: c, created: map[string]time.Time{}, stopped: map[string]time.Time{}}
}

// now is ECS's timestamp precision: milliseconds.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func (m *motoECS) fill(t *types.Task) {
	m.mu.Lock()
	defer m.mu.Unlock()
	arn := aws.ToString(t.TaskArn)
	created, ok := m.created[arn]
	if !ok {
		return // not launched through this client: leave it as moto says
	}
	if t.CreatedAt == nil {
		t.CreatedAt = aws.Time(created)
	}
	// Every moto task starts RUNNING; it has started whatever it is now.
	if t.StartedAt == nil {
		t.StartedAt = aws.Time(created)
	}
	if aws.ToString(t.LastStatus) == fleet.StatusStopped {
		at, ok := m.stopped[arn]
		if !ok {
			return
		}
		if t.StoppedAt == nil {
			t.StoppedAt = aws.Time(at)
		}
		if t.StopCode == "" {
			t.StopCode = types.TaskStopCodeUserInitiated
		}
	}
}

func (m *motoECS) RunTask(ctx context.Context, in *ecs.RunTaskInput, optFns ...func(*ecs.Options)) (*ecs.RunTaskOutput, error) {
	out, err := m.c.RunTask(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	at := now()
	m.mu.Lock()
	for _, t := range out.Tasks {
		m.created[aws.ToString(t.TaskArn)] = at
	}
	m.mu.Unlock()
	for i := range out.Tasks {
		m.fill(&out.Tasks[i])
	}
	return out, nil
}

func (m *motoECS) ListTasks(ctx context.Context, in *ecs.ListTasksInput, optFns ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	return m.c.ListTasks(ctx, in, optFns...)
}

func (m *motoECS) DescribeTasks(ctx context.Context, in *ecs.DescribeTasksInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	out, err := m.c.DescribeTasks(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	for i := range out.Tasks {
		m.fill(&out.Tasks[i])
	}
	return out, nil
}

func (m *motoECS) StopTask(ctx context.Context, in *ecs.StopTaskInput, optFns ...func(*ecs.Options)) (*ecs.StopTaskOutput, error) {
	out, err := m.c.StopTask(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	if out.Task != nil {
		m.mu.Lock()
		arn := aws.ToString(out.Task.TaskArn)
		if _, ok := m.stopped[arn]; !ok {
			m.stopped[arn] = now()
		}
		m.mu.Unlock()
		m.fill(out.Task)
	}
	return out, nil
}
