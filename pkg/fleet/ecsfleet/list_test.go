package ecsfleet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

const taskDefARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/worker:7"

// cluster is a fake cluster's tasks by ARN, answering DescribeTasks as ECS
// does: MISSING for unknown ARNs.
type cluster map[string]types.Task

func (c cluster) add(t types.Task) { c[aws.ToString(t.TaskArn)] = t }

func (c cluster) describe(t *testing.T) func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
	return func(in *ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
		require.Equal(t, "jobs", aws.ToString(in.Cluster))
		require.LessOrEqual(t, len(in.Tasks), 100, "DescribeTasks takes at most 100 tasks")
		require.NotEmpty(t, in.Tasks)
		out := &ecs.DescribeTasksOutput{}
		for _, arn := range in.Tasks {
			if task, ok := c[arn]; ok {
				out.Tasks = append(out.Tasks, task)
			} else {
				out.Failures = append(out.Failures, types.Failure{Arn: aws.String(arn), Reason: aws.String("MISSING")})
			}
		}
		return out, nil
	}
}

func runningTask(i int) types.Task {
	return types.Task{
		TaskArn:           aws.String(taskARN(i)),
		LastStatus:        aws.String(fleet.StatusRunning),
		DesiredStatus:     aws.String(fleet.StatusRunning),
		StartedBy:         aws.String(DefaultStartedBy),
		TaskDefinitionArn: aws.String(taskDefARN),
		CreatedAt:         aws.Time(epoch.Add(time.Duration(i) * time.Second)),
		StartedAt:         aws.Time(epoch.Add(time.Duration(i)*time.Second + 30*time.Second)),
	}
}

// pages answers ListTasks for one desired status with arns in pages of
// size, and nothing for the other status.
func pages(t *testing.T, running, stopped []string, size int) func(*ecs.ListTasksInput) (*ecs.ListTasksOutput, error) {
	return func(in *ecs.ListTasksInput) (*ecs.ListTasksOutput, error) {
		require.Equal(t, "jobs", aws.ToString(in.Cluster))
		require.Equal(t, "worker", aws.ToString(in.Family), "the family without its revision")
		require.Nil(t, in.StartedBy, "ECS allows startedBy only as the only filter")
		arns := running
		if in.DesiredStatus == types.DesiredStatusStopped {
			arns = stopped
		} else {
			require.Equal(t, types.DesiredStatusRunning, in.DesiredStatus)
		}
		start := 0
		if in.NextToken != nil {
			_, err := fmt.Sscanf(aws.ToString(in.NextToken), "page-%d", &start)
			require.NoError(t, err)
		}
		end := min(start+size, len(arns))
		out := &ecs.ListTasksOutput{TaskArns: arns[start:end]}
		if end < len(arns) {
			out.NextToken = aws.String(fmt.Sprintf("page-%d", end))
		}
		return out, nil
	}
}

func TestListPaginatesAndBatches(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := cluster{}
	var running, stopped []string
	for i := range 230 {
		task := runningTask(i)
		if i >= 200 {
			task.LastStatus, task.DesiredStatus = aws.String(fleet.StatusStopped), aws.String(fleet.StatusStopped)
			stopped = append(stopped, taskARN(i))
		} else {
			running = append(running, taskARN(i))
		}
		c.add(task)
	}
	// A task that moved from RUNNING to STOPPED between the two listings
	// appears in both; one listed and gone before DescribeTasks is MISSING.
	stopped = append(stopped, taskARN(5), taskARN(999))
	b.api.listTasks = pages(t, running, stopped, 40)
	b.api.describeTasks = c.describe(t)

	ws, err := b.d.List(t.Context())
	require.NoError(t, err)
	require.Len(t, ws, 230)
	for i, w := range ws {
		require.Equal(t, taskARN(i), w.ID, "sorted by CreatedAt")
	}
	_, lists, describes, _ := b.api.calls()
	require.Equal(t, 5+1, lists, "200 running in pages of 40, then 32 stopped in one")
	require.Equal(t, 3, describes, "231 distinct tasks, 100 a call")
}

func TestListSameNextTokenTwice(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.api.listTasks = func(*ecs.ListTasksInput) (*ecs.ListTasksOutput, error) {
		return &ecs.ListTasksOutput{TaskArns: []string{taskARN(1)}, NextToken: aws.String("again")}, nil
	}
	_, err := b.d.List(t.Context())
	require.ErrorIs(t, err, errcode.Internal)
}

func TestListMapsTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *Options) { o.ContainerName = "worker" })
	c := cluster{}

	running := runningTask(1)
	running.HealthStatus = types.HealthStatusHealthy
	running.Attachments = []types.Attachment{
		{Type: aws.String("ServiceConnect")},
		{Type: aws.String("ElasticNetworkInterface"), Status: aws.String("ATTACHED"), Details: []types.KeyValuePair{
			{Name: aws.String("subnetId"), Value: aws.String("subnet-a")},
			{Name: aws.String("networkInterfaceId"), Value: aws.String("eni-1")},
			{Name: aws.String("privateIPv4Address"), Value: aws.String("10.0.1.17")},
		}},
	}
	c.add(running)

	// Event-shaped attachment type, as in task state change events.
	pending := runningTask(2)
	pending.LastStatus, pending.StartedAt = aws.String(fleet.StatusPending), nil
	pending.HealthStatus = types.HealthStatusUnknown
	pending.Attachments = []types.Attachment{{Type: aws.String("eni"), Details: []types.KeyValuePair{
		{Name: aws.String("privateIPv4Address"), Value: aws.String("10.0.2.5")},
	}}}
	c.add(pending)

	// No attachment details yet: the container's interface has it.
	fromContainer := runningTask(3)
	fromContainer.Containers = []types.Container{{NetworkInterfaces: []types.NetworkInterface{{PrivateIpv4Address: aws.String("10.0.3.9")}}}}
	c.add(fromContainer)

	spot := runningTask(4)
	spot.LastStatus, spot.DesiredStatus = aws.String(fleet.StatusStopped), aws.String(fleet.StatusStopped)
	spot.StopCode = types.TaskStopCodeSpotInterruption
	spot.StoppedReason = aws.String("Your Spot Task was interrupted.")
	spot.StoppedAt = aws.Time(epoch.Add(time.Hour))
	// The worker's container (Options.ContainerName) gives the exit code,
	// wherever it is in the list.
	spot.Containers = []types.Container{{Name: aws.String("init"), ExitCode: aws.Int32(0)},
		{Name: aws.String("log"), ExitCode: aws.Int32(1), Reason: aws.String("the sidecar's own failure")},
		{Name: aws.String("worker"), ExitCode: aws.Int32(137), Reason: aws.String("OutOfMemoryError: Container killed due to memory usage")}}
	c.add(spot)

	failed := runningTask(5)
	failed.LastStatus, failed.DesiredStatus = aws.String(fleet.StatusStopped), aws.String(fleet.StatusStopped)
	failed.StartedAt = nil
	failed.StopCode = types.TaskStopCodeTaskFailedToStart
	failed.StoppedReason = aws.String("CannotPullContainerError: pull image manifest has been retried 5 time(s)")
	failed.StoppedAt = aws.Time(epoch.Add(2 * time.Hour))
	c.add(failed)

	foreignStarter := runningTask(6)
	foreignStarter.StartedBy = aws.String("someone-else")
	c.add(foreignStarter)
	foreignFamily := runningTask(7)
	foreignFamily.TaskDefinitionArn = aws.String("arn:aws:ecs:us-east-1:123456789012:task-definition/other:1")
	c.add(foreignFamily)

	all := []string{taskARN(1), taskARN(2), taskARN(3), taskARN(6), taskARN(7)}
	b.api.listTasks = pages(t, all, []string{taskARN(4), taskARN(5)}, 100)
	b.api.describeTasks = c.describe(t)

	ws, err := b.d.List(t.Context())
	require.NoError(t, err)
	at := func(i int, d time.Duration) time.Time { return epoch.Add(time.Duration(i)*time.Second + d) }
	want := []fleet.Worker{
		{ID: taskARN(1), LastStatus: "RUNNING", DesiredStatus: "RUNNING", Health: "HEALTHY", Addr: "10.0.1.17", CreatedAt: at(1, 0), StartedAt: at(1, 30*time.Second)},
		{ID: taskARN(2), LastStatus: "PENDING", DesiredStatus: "RUNNING", Health: "UNKNOWN", Addr: "10.0.2.5", CreatedAt: at(2, 0)},
		{ID: taskARN(3), LastStatus: "RUNNING", DesiredStatus: "RUNNING", Addr: "10.0.3.9", CreatedAt: at(3, 0), StartedAt: at(3, 30*time.Second)},
		{ID: taskARN(4), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: at(4, 0), StartedAt: at(4, 30*time.Second),
			StoppedAt: epoch.Add(time.Hour), StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted.",
			ExitCode: aws.Int(137), ContainerReason: "OutOfMemoryError: Container killed due to memory usage"},
		{ID: taskARN(5), LastStatus: "STOPPED", DesiredStatus: "STOPPED", CreatedAt: at(5, 0),
			StoppedAt: epoch.Add(2 * time.Hour), StopCode: fleet.StopTaskFailedToStart, Reason: "CannotPullContainerError: pull image manifest has been retried 5 time(s)"},
	}
	require.Empty(t, cmp.Diff(want, ws))
	require.False(t, ws[3].Active())
	require.True(t, ws[1].Pending())
}

func TestListErrors(t *testing.T) {
	t.Parallel()
	t.Run("describe failure other than MISSING", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.api.listTasks = pages(t, []string{taskARN(1)}, nil, 100)
		b.api.describeTasks = func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
			return &ecs.DescribeTasksOutput{Failures: []types.Failure{{Arn: aws.String(taskARN(1)), Reason: aws.String("INTERNAL")}}}, nil
		}
		_, err := b.d.List(t.Context())
		require.ErrorIs(t, err, errcode.Unavailable)
	})
	t.Run("no cluster", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.api.listTasks = func(*ecs.ListTasksInput) (*ecs.ListTasksOutput, error) {
			return nil, apiErr("ListTasks", &types.ClusterNotFoundException{Message: aws.String("Cluster not found.")})
		}
		_, err := b.d.List(t.Context())
		require.ErrorIs(t, err, errcode.NotFound)
	})
	t.Run("throttled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.api.listTasks = pages(t, []string{taskARN(1)}, nil, 100)
		b.api.describeTasks = func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
			return nil, apiErr("DescribeTasks", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"})
		}
		_, err := b.d.List(t.Context())
		require.ErrorIs(t, err, errcode.Unavailable)
	})
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := b.d.List(ctx)
		require.Equal(t, errcode.Canceled, errcode.Of(err))
		_, lists, _, _ := b.api.calls()
		require.Zero(t, lists)
	})
}

func TestStop(t *testing.T) {
	t.Parallel()
	stoppedTask := runningTask(2)
	stoppedTask.LastStatus, stoppedTask.DesiredStatus = aws.String(fleet.StatusStopped), aws.String(fleet.StatusStopped)
	stoppedTask.StoppedReason = aws.String("first")
	stopping := runningTask(3) // a Spot interruption notice: still running, told to stop
	stopping.DesiredStatus = aws.String(fleet.StatusStopped)
	foreign := runningTask(4)
	foreign.StartedBy = aws.String("someone-else")

	notFound := apiErr("StopTask", &types.InvalidParameterException{Message: aws.String("The referenced task was not found.")})
	cases := []struct {
		name      string
		id        string
		reason    string
		describe  func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) // nil: the cluster
		stop      func(*ecs.StopTaskInput) (*ecs.StopTaskOutput, error)
		want      errcode.Code // Unknown: success
		wantStop  *ecs.StopTaskInput
		stopCalls int
	}{
		{name: "running task", id: taskARN(1), reason: "scale in", stopCalls: 1,
			wantStop: &ecs.StopTaskInput{Cluster: aws.String("jobs"), Task: aws.String(taskARN(1)), Reason: aws.String("scale in")}},
		{name: "bare task id", id: fmt.Sprintf("%032x", 1), reason: "r", stopCalls: 1,
			wantStop: &ecs.StopTaskInput{Cluster: aws.String("jobs"), Task: aws.String(taskARN(1)), Reason: aws.String("r")}},
		{name: "empty reason leaves ECS's default", id: taskARN(1), stopCalls: 1,
			wantStop: &ecs.StopTaskInput{Cluster: aws.String("jobs"), Task: aws.String(taskARN(1))}},
		{name: "long reason cut to 255 bytes", id: taskARN(1), reason: strings.Repeat("é", 200), stopCalls: 1,
			wantStop: &ecs.StopTaskInput{Cluster: aws.String("jobs"), Task: aws.String(taskARN(1)), Reason: aws.String(strings.Repeat("é", 127))}},
		{name: "stopped task keeps its first reason", id: taskARN(2), reason: "second"},
		{name: "stopping task is left alone", id: taskARN(3), reason: "again"},
		{name: "unknown task", id: taskARN(99), reason: "r", want: errcode.NotFound},
		{name: "task of another starter", id: taskARN(4), reason: "r", want: errcode.NotFound},
		{name: "task absent without a failure", id: taskARN(98), reason: "r", want: errcode.NotFound,
			describe: func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
				return &ecs.DescribeTasksOutput{}, nil
			}},
		{name: "id that cannot name a task", id: strings.Repeat("x", 300), reason: "r", want: errcode.NotFound,
			describe: func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
				return nil, apiErr("DescribeTasks", &types.InvalidParameterException{Message: aws.String("Task Identifier is invalid")})
			}},
		{name: "task gone between describe and stop", id: taskARN(1), reason: "r", want: errcode.NotFound, stopCalls: 1,
			stop: func(*ecs.StopTaskInput) (*ecs.StopTaskOutput, error) { return nil, notFound }},
		{name: "describe failure other than MISSING", id: taskARN(1), reason: "r", want: errcode.Unavailable,
			describe: func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
				return &ecs.DescribeTasksOutput{Failures: []types.Failure{{Arn: aws.String(taskARN(1)), Reason: aws.String("INTERNAL")}}}, nil
			}},
		{name: "describe throttled", id: taskARN(1), reason: "r", want: errcode.Unavailable,
			describe: func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
				return nil, apiErr("DescribeTasks", &types.InvalidParameterException{Message: aws.String("Rate exceeded")})
			}},
		{name: "no cluster", id: taskARN(1), reason: "r", want: errcode.NotFound,
			describe: func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
				return nil, apiErr("DescribeTasks", &types.ClusterNotFoundException{Message: aws.String("Cluster not found.")})
			}},
		{name: "stop throttled", id: taskARN(1), reason: "r", want: errcode.Unavailable, stopCalls: 1,
			stop: func(*ecs.StopTaskInput) (*ecs.StopTaskOutput, error) {
				return nil, apiErr("StopTask", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			cl := cluster{}
			for _, task := range []types.Task{runningTask(1), stoppedTask, stopping, foreign} {
				cl.add(task)
			}
			b.api.describeTasks = c.describe
			if c.describe == nil {
				describe := cl.describe(t)
				b.api.describeTasks = func(in *ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error) {
					// ECS takes a task id as well as an ARN.
					for i, id := range in.Tasks {
						if !strings.Contains(id, "/") {
							in.Tasks[i] = "arn:aws:ecs:us-east-1:123456789012:task/jobs/" + id
						}
					}
					return describe(in)
				}
			}
			b.api.stopTask = c.stop
			if c.stop == nil {
				b.api.stopTask = func(*ecs.StopTaskInput) (*ecs.StopTaskOutput, error) { return &ecs.StopTaskOutput{}, nil }
			}
			err := b.d.Stop(t.Context(), c.id, c.reason)
			if c.want == errcode.Unknown {
				require.NoError(t, err)
			} else {
				require.Equal(t, c.want, errcode.Of(err), "%v", err)
			}
			_, _, _, stops := b.api.calls()
			require.Equal(t, c.stopCalls, stops)
			if c.wantStop != nil {
				require.Equal(t, c.wantStop, b.api.stops[0])
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := b.d.Stop(ctx, taskARN(1), "r")
		require.Equal(t, errcode.Canceled, errcode.Of(err))
		_, _, describes, stops := b.api.calls()
		require.Zero(t, describes+stops)
	})
}
