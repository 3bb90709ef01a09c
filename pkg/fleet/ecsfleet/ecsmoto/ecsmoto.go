// Package ecsmoto is test support for ECS on a moto server: what the Go
// SDK and the ECS fleet need from moto that moto does not do as ECS does
// (AWS_NOTES §1 and §3.3: numbers where ECS sends
// strings, task timestamps and stop codes moto leaves out), and a cluster
// with a Fargate task definition to run tasks from. Tests only; no
// production code imports it.
package ecsmoto

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
)

// numericFix makes moto's ECS answers readable by the Go SDK. moto
// 5.2.1 writes tasks[].containers[].cpu, memory and memoryReservation as
// JSON numbers where the API has strings, and the SDK then fails RunTask,
// DescribeTasks and StopTask with "expected string, got 0" (AWS_NOTES §0
// item 2, §3.3). It sits in the Deserialize step after the protocol
// deserializer is added, so it sees the raw body first and hands on a body
// with those numbers as strings. Test-only: ECS itself sends strings.
var numericFix = middleware.DeserializeMiddlewareFunc("MotoECSNumericStringFix", func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
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

// Fix adds the numeric fix to an ECS client's stack: ecs.NewFromConfig(cfg,
// ecsmoto.Fix).
func Fix(o *ecs.Options) {
	o.APIOptions = append(o.APIOptions, func(s *middleware.Stack) error {
		return s.Deserialize.Add(numericFix, middleware.After)
	})
}

// API supplies task fields ECS always returns and moto 5.2.1 never
// does (AWS_NOTES §1, ECS rows): createdAt, startedAt, stoppedAt and
// stopCode. moto starts a Fargate task RUNNING at once and StopTask makes
// it STOPPED at once, so this records when RunTask and StopTask answered
// and fills in those times, and stopCode UserInitiated, as ECS would for
// the same calls. It only fills fields moto left empty and changes nothing
// else, so the suite still checks that the driver maps what ECS sends; it
// stands for the backend, never for the driver.
type API struct {
	c *ecs.Client

	mu      sync.Mutex
	created map[string]time.Time
	stopped map[string]time.Time
	exits   map[string]exit
}

// exit is how a task's essential container ended (Exit).
type exit struct {
	code   int32
	reason string
}

// Exit makes the task read as ECS reports one whose essential container
// exited by itself (moto has no such tasks: only StopTask stops them): stop
// code EssentialContainerExited, stopped reason "Essential container in
// task exited", and the first container's exit code and reason. It takes
// effect once the task is STOPPED (call StopTask after it).
func (m *API) Exit(taskARN string, code int, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exits[taskARN] = exit{code: int32(code), reason: reason}
}

var _ ecsfleet.API = (*API)(nil)

// New wraps an ECS client (made with Fix) pointed at moto.
func New(c *ecs.Client) *API {
	return &API{c: c, created: map[string]time.Time{}, stopped: map[string]time.Time{}, exits: map[string]exit{}}
}

// now is ECS's timestamp precision: milliseconds.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func (m *API) fill(t *types.Task) {
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
		if x, ok := m.exits[arn]; ok {
			t.StopCode = types.TaskStopCodeEssentialContainerExited
			t.StoppedReason = aws.String("Essential container in task exited")
			if len(t.Containers) == 0 {
				t.Containers = []types.Container{{}}
			}
			t.Containers[0].ExitCode = aws.Int32(x.code)
			t.Containers[0].Reason = aws.String(x.reason)
		}
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

func (m *API) RunTask(ctx context.Context, in *ecs.RunTaskInput, optFns ...func(*ecs.Options)) (*ecs.RunTaskOutput, error) {
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

func (m *API) ListTasks(ctx context.Context, in *ecs.ListTasksInput, optFns ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	return m.c.ListTasks(ctx, in, optFns...)
}

func (m *API) DescribeTasks(ctx context.Context, in *ecs.DescribeTasksInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	out, err := m.c.DescribeTasks(ctx, in, optFns...)
	if err != nil {
		return out, err
	}
	for i := range out.Tasks {
		m.fill(&out.Tasks[i])
	}
	return out, nil
}

func (m *API) StopTask(ctx context.Context, in *ecs.StopTaskInput, optFns ...func(*ecs.Options)) (*ecs.StopTaskOutput, error) {
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

// DefaultSubnets returns the default VPC's subnets (moto has them in every
// region; their VPC has DNS hostnames on, which moto's ECS needs).
func DefaultSubnets(t testing.TB, c *ec2.Client) []string {
	t.Helper()
	out, err := c.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}},
	})
	require.NoError(t, err)
	var ids []string
	for _, s := range out.Subnets {
		ids = append(ids, aws.ToString(s.SubnetId))
	}
	require.NotEmpty(t, ids, "no default subnets")
	if len(ids) > 2 {
		ids = ids[:2]
	}
	return ids
}

// CreateTaskFamily creates a cluster and a Fargate task definition, both
// named name, removed at cleanup, and returns the task definition's
// family:revision.
func CreateTaskFamily(t testing.TB, c *ecs.Client, name string) string {
	t.Helper()
	_, err := c.CreateCluster(t.Context(), &ecs.CreateClusterInput{ClusterName: aws.String(name)})
	require.NoError(t, err)
	td, err := c.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(name),
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		NetworkMode:             types.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name:      aws.String("worker"),
			Image:     aws.String("public.ecr.aws/docker/library/busybox:latest"),
			Essential: aws.Bool(true),
			Memory:    aws.Int32(512), // moto needs it on every container
			Command:   []string{"sleep", "3600"},
		}},
	})
	require.NoError(t, err)
	ref := aws.ToString(td.TaskDefinition.Family) + ":" + strconv.Itoa(int(td.TaskDefinition.Revision))
	t.Cleanup(func() {
		// t.Context has ended by now; the suite stopped its tasks.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String(ref)})
		require.NoError(t, err)
		_, err = c.DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: aws.String(name)})
		require.NoError(t, err)
	})
	return ref
}
