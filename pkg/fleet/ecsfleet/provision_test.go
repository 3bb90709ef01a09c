package ecsfleet

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

func taskARN(i int) string {
	return fmt.Sprintf("arn:aws:ecs:us-east-1:123456789012:task/jobs/%032x", i)
}

// launched answers RunTask with tasks for the first started of count.
func launched(started int, fs ...types.Failure) func(context.Context, *ecs.RunTaskInput) (*ecs.RunTaskOutput, error) {
	return func(_ context.Context, in *ecs.RunTaskInput) (*ecs.RunTaskOutput, error) {
		out := &ecs.RunTaskOutput{Failures: fs}
		for i := range min(started, int(aws.ToInt32(in.Count))) {
			out.Tasks = append(out.Tasks, types.Task{
				TaskArn:           aws.String(taskARN(i)),
				LastStatus:        aws.String(fleet.StatusProvisioning),
				DesiredStatus:     aws.String(fleet.StatusRunning),
				CreatedAt:         aws.Time(epoch.Add(time.Duration(i) * time.Millisecond)),
				StartedBy:         in.StartedBy,
				TaskDefinitionArn: aws.String("arn:aws:ecs:us-east-1:123456789012:task-definition/worker:7"),
			})
		}
		return out, nil
	}
}

var tokenRE = regexp.MustCompile(`^jobfleet-[0-9A-HJKMNP-TV-Z]{26}$`)

func TestOpenValidatesOptions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no cluster", func(o *Options) { o.Cluster = "" }, "Cluster is required"},
		{"no task definition", func(o *Options) { o.TaskDefinition = "" }, "TaskDefinition"},
		{"task definition ARN without family", func(o *Options) { o.TaskDefinition = "arn:aws:ecs:us-east-1:1:task-definition/" }, "TaskDefinition"},
		{"no subnets", func(o *Options) { o.Subnets = nil }, "Subnets is required"},
		{"too many subnets", func(o *Options) { o.Subnets = make([]string, 17) }, "17 subnets"},
		{"empty subnet", func(o *Options) { o.Subnets = []string{"subnet-a", ""} }, "empty subnet"},
		{"too many security groups", func(o *Options) { o.SecurityGroups = []string{"a", "b", "c", "d", "e", "f"} }, "6 security groups"},
		{"startedBy too long", func(o *Options) { o.StartedBy = strings.Repeat("a", 37) }, "StartedBy"},
		{"startedBy bad character", func(o *Options) { o.StartedBy = "job fleet" }, "StartedBy"},
		{"env without container", func(o *Options) { o.Env = []string{"A=1"} }, "ContainerName"},
		{"env not NAME=value", func(o *Options) { o.ContainerName, o.Env = "worker", []string{"JUSTNAME"} }, "not NAME=value"},
		{"env empty name", func(o *Options) { o.ContainerName, o.Env = "worker", []string{"=x"} }, "not NAME=value"},
		{"reserved tag", func(o *Options) { o.Tags = map[string]string{"aws:x": "y"} }, "reserved"},
		{"long tag key", func(o *Options) { o.Tags = map[string]string{strings.Repeat("k", 129): "y"} }, "tag key"},
		{"negative rate", func(o *Options) { o.LaunchRate = Rate{PerSecond: -1, Burst: 5} }, "LaunchRate"},
		{"zero burst", func(o *Options) { o.RunTaskRate = Rate{PerSecond: 5} }, "RunTaskRate"},
		{"bad capacity provider weight", func(o *Options) { o.CapacityProviders = []string{"FARGATE:x"} }, "weight"},
		{"two bases", func(o *Options) { o.CapacityProviders = []string{"FARGATE:1:1", "FARGATE_SPOT:1:2"} }, "only one"},
		{"all weights zero", func(o *Options) { o.CapacityProviders = []string{"FARGATE:0"} }, "weight above 0"},
		{"empty capacity provider", func(o *Options) { o.CapacityProviders = []string{""} }, "NAME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o := baseOptions()
			c.edit(&o)
			f, err := Open(t.Context(), &fakeAPI{t: t}, o)
			require.Nil(t, f)
			require.ErrorIs(t, err, errcode.InvalidArgument)
			require.ErrorContains(t, err, c.want)
		})
	}
	t.Run("no client", func(t *testing.T) {
		t.Parallel()
		_, err := Open(t.Context(), nil, baseOptions())
		require.ErrorIs(t, err, errcode.InvalidArgument)
	})
	t.Run("valid", func(t *testing.T) {
		t.Parallel()
		f, err := Open(t.Context(), &fakeAPI{t: t}, baseOptions())
		require.NoError(t, err)
		require.NoError(t, f.Close())
	})
}

func TestProvisionRequest(t *testing.T) {
	t.Parallel()
	t.Run("launch type", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(o *Options) { o.SecurityGroups = nil })
		b.api.runTask = launched(3)
		_, err := b.d.Provision(t.Context(), 3)
		require.NoError(t, err)
		require.Len(t, b.api.runs, 1)
		in := b.api.runs[0]
		require.Regexp(t, tokenRE, aws.ToString(in.ClientToken))
		in.ClientToken = nil
		want := &ecs.RunTaskInput{
			TaskDefinition: aws.String("worker:7"),
			Cluster:        aws.String("jobs"),
			Count:          aws.Int32(3),
			StartedBy:      aws.String(DefaultStartedBy),
			LaunchType:     types.LaunchTypeFargate,
			NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
				Subnets:        []string{"subnet-a", "subnet-b"},
				SecurityGroups: []string{}, // present even when empty
				AssignPublicIp: types.AssignPublicIpDisabled,
			}},
		}
		require.Equal(t, want, in)
	})
	t.Run("capacity providers, overrides, tags", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(o *Options) {
			o.CapacityProviders = []string{"FARGATE_SPOT:3", "FARGATE:1:1"}
			o.AssignPublicIP = true
			o.ContainerName = "worker"
			o.Env = []string{"JOBFLEET_PROFILE=aws", "EMPTY=", "WITH_EQ=a=b"}
			o.Tags = map[string]string{"team": "jobs", "app": "jobfleet"}
			o.StartedBy = "jf/prod_1"
			o.Group = "jobfleet-workers"
		})
		b.api.runTask = launched(1)
		_, err := b.d.Provision(t.Context(), 1)
		require.NoError(t, err)
		in := b.api.runs[0]
		require.True(t, strings.HasPrefix(aws.ToString(in.ClientToken), "jf/prod_1-"))
		require.LessOrEqual(t, len(aws.ToString(in.ClientToken)), 64)
		in.ClientToken = nil
		want := &ecs.RunTaskInput{
			TaskDefinition: aws.String("worker:7"),
			Cluster:        aws.String("jobs"),
			Count:          aws.Int32(1),
			StartedBy:      aws.String("jf/prod_1"),
			Group:          aws.String("jobfleet-workers"),
			CapacityProviderStrategy: []types.CapacityProviderStrategyItem{
				{CapacityProvider: aws.String("FARGATE_SPOT"), Weight: 3},
				{CapacityProvider: aws.String("FARGATE"), Weight: 1, Base: 1},
			},
			NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
				Subnets:        []string{"subnet-a", "subnet-b"},
				SecurityGroups: []string{"sg-1"},
				AssignPublicIp: types.AssignPublicIpEnabled,
			}},
			Overrides: &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{
				Name: aws.String("worker"),
				Environment: []types.KeyValuePair{
					{Name: aws.String("JOBFLEET_PROFILE"), Value: aws.String("aws")},
					{Name: aws.String("EMPTY"), Value: aws.String("")},
					{Name: aws.String("WITH_EQ"), Value: aws.String("a=b")},
				},
			}}},
			Tags: []types.Tag{
				{Key: aws.String("app"), Value: aws.String("jobfleet")},
				{Key: aws.String("team"), Value: aws.String("jobs")},
			},
		}
		require.Equal(t, want, in)
	})
}

func TestProvisionRefusesCountBeyondMax(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, n := range []int{fleet.MaxProvision + 1, 100, 0, -1} {
		p, err := b.d.Provision(t.Context(), n)
		require.ErrorIs(t, err, errcode.InvalidArgument, "n=%d", n)
		require.Empty(t, p.Workers)
		require.Empty(t, p.Failures)
	}
	runs, _, _, _ := b.api.calls()
	require.Zero(t, runs, "RunTask called for an invalid count")
}

func TestProvisionMapsTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.api.runTask = launched(2)
	p, err := b.d.Provision(t.Context(), 2)
	require.NoError(t, err)
	require.Empty(t, p.Failures)
	want := []fleet.Worker{
		{ID: taskARN(0), LastStatus: fleet.StatusProvisioning, DesiredStatus: fleet.StatusRunning, CreatedAt: epoch},
		{ID: taskARN(1), LastStatus: fleet.StatusProvisioning, DesiredStatus: fleet.StatusRunning, CreatedAt: epoch.Add(time.Millisecond)},
	}
	require.Empty(t, cmp.Diff(want, p.Workers))
	for _, w := range p.Workers {
		require.True(t, w.Pending() && w.Active())
	}
}

func failure(reason, detail string) types.Failure {
	f := types.Failure{Reason: aws.String(reason)}
	if detail != "" {
		f.Detail = aws.String(detail)
	}
	return f
}

func repeat(n int, f types.Failure) []types.Failure {
	out := make([]types.Failure, n)
	for i := range out {
		out[i] = f
	}
	return out
}

const capacityReason = "Capacity is unavailable at this time. Please try again later or in a different availability zone"

func TestProvisionFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		n       int
		started int
		fs      []types.Failure
		want    []fleet.Failure
	}{
		{
			name: "ENI and capacity", n: 10, started: 3,
			fs: append(repeat(5, failure("RESOURCE:ENI", "")), repeat(2, failure(capacityReason, ""))...),
			want: []fleet.Failure{
				{Count: 5, Reason: "RESOURCE:ENI", Retryable: true},
				{Count: 2, Reason: capacityReason, Retryable: true},
			},
		},
		{
			name: "one failure entry for several tasks", n: 4, started: 0,
			fs:   []types.Failure{failure("RESOURCE:MEMORY", "")},
			want: []fleet.Failure{{Count: 4, Reason: "RESOURCE:MEMORY", Retryable: true}},
		},
		{
			name: "agent", n: 2, started: 1,
			fs:   []types.Failure{failure("AGENT", "")},
			want: []fleet.Failure{{Count: 1, Reason: "AGENT", Retryable: true}},
		},
		{
			name: "throttled reason", n: 2, started: 0,
			fs:   repeat(2, failure("Rate exceeded", "")),
			want: []fleet.Failure{{Count: 2, Reason: "Rate exceeded", Retryable: true}},
		},
		{
			name: "attribute is not retryable, detail kept", n: 3, started: 0,
			fs:   repeat(3, failure("ATTRIBUTE", "ecs.cpu-architecture")),
			want: []fleet.Failure{{Count: 3, Reason: "ATTRIBUTE: ecs.cpu-architecture", Retryable: false}},
		},
		{
			name: "more failures than missing tasks", n: 4, started: 3,
			fs:   []types.Failure{failure("RESOURCE:ENI", ""), failure(capacityReason, "")},
			want: []fleet.Failure{{Count: 1, Reason: "RESOURCE:ENI", Retryable: true}},
		},
		{
			name: "missing tasks without a failure", n: 5, started: 2,
			want: []fleet.Failure{{Count: 3, Reason: "RunTask started fewer tasks than asked and gave no reason", Retryable: true}},
		},
		{
			name: "failures but every task started", n: 2, started: 2,
			fs: []types.Failure{failure("MISSING", "")},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.api.runTask = launched(c.started, c.fs...)
			p, err := b.d.Provision(t.Context(), c.n)
			require.NoError(t, err)
			require.Len(t, p.Workers, c.started)
			require.Empty(t, cmp.Diff(c.want, p.Failures))
			total := len(p.Workers)
			for _, f := range p.Failures {
				total += f.Count
			}
			require.Equal(t, c.n, total, "started + failed must add up to what was asked")
			// Tasks that did not launch gave their launch tokens back.
			require.Equal(t, float64(DefaultLaunchRate.Burst-c.started), b.d.launches.tokens)
		})
	}
}

func TestProvisionErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		err       error
		want      errcode.Code
		retryable bool
	}{
		{"throttling", apiErr("RunTask", &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}), errcode.Unavailable, true},
		{"server", apiErr("RunTask", &types.ServerException{Message: aws.String("internal error")}), errcode.Unavailable, true},
		{"server fault without a known code", apiErr("RunTask", &smithy.GenericAPIError{Code: "InternalFailure", Fault: smithy.FaultServer}), errcode.Unavailable, true},
		{"transport", apiErr("RunTask", &smithyhttp.RequestSendError{Err: errors.New("connection refused")}), errcode.Unavailable, true},
		{"capacity client exception", apiErr("RunTask", &types.ClientException{Message: aws.String("You've reached the limit on the number of tasks you can run concurrently")}), errcode.ResourceExhausted, true},
		{"capacity unavailable", apiErr("RunTask", &types.ClientException{Message: aws.String(capacityReason)}), errcode.ResourceExhausted, true},
		{"RESOURCE in a client exception", apiErr("RunTask", &types.ClientException{Message: aws.String("RESOURCE:ENI")}), errcode.ResourceExhausted, true},
		{"limit exceeded", apiErr("RunTask", &types.LimitExceededException{Message: aws.String("limit")}), errcode.ResourceExhausted, true},
		{"throttling inside a parameter error", apiErr("RunTask", &types.InvalidParameterException{Message: aws.String("Error retrieving security group information for [sg-1]: Request limit exceeded. (ErrorCode: RequestLimitExceeded)")}), errcode.Unavailable, true},
		{"other client exception", apiErr("RunTask", &types.ClientException{Message: aws.String("Unable to find task definition")}), errcode.InvalidArgument, false},
		{"invalid parameter", apiErr("RunTask", &types.InvalidParameterException{Message: aws.String("Network Configuration must be provided when networkMode 'awsvpc' is specified.")}), errcode.InvalidArgument, false},
		{"platform", apiErr("RunTask", &types.PlatformUnknownException{Message: aws.String("9.9")}), errcode.InvalidArgument, false},
		{"cluster not found", apiErr("RunTask", &types.ClusterNotFoundException{Message: aws.String("Cluster not found.")}), errcode.NotFound, false},
		{"conflict", apiErr("RunTask", &types.ConflictException{Message: aws.String("token reused")}), errcode.FailedPrecondition, false},
		{"unreadable answer", apiErr("RunTask", &smithy.DeserializationError{Err: errors.New("expected string, got 0")}), errcode.Internal, false},
		{"access denied", apiErr("RunTask", &types.AccessDeniedException{Message: aws.String("no")}), errcode.Unknown, false},
		{"context", apiErr("RunTask", fmt.Errorf("request canceled: %w", context.DeadlineExceeded)), errcode.Canceled, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.api.runTask = func(context.Context, *ecs.RunTaskInput) (*ecs.RunTaskOutput, error) { return nil, c.err }
			p, err := b.d.Provision(t.Context(), 4)
			require.Error(t, err)
			require.Equal(t, c.want, errcode.Of(err), "%v", err)
			require.Equal(t, c.retryable, errcode.Retryable(err), "%v", err)
			require.ErrorIs(t, err, c.err, "the cause stays in the chain")
			require.Empty(t, p.Workers)
			// A failed call launched nothing: its launch tokens are back.
			require.Equal(t, float64(DefaultLaunchRate.Burst), b.d.launches.tokens)
		})
	}
}

func TestProvisionCancelledContext(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.d.Provision(ctx, 1)
	require.Equal(t, errcode.Canceled, errcode.Of(err))
	require.ErrorIs(t, err, context.Canceled)
	runs, _, _, _ := b.api.calls()
	require.Zero(t, runs)
}

func TestProvisionRateLimits(t *testing.T) {
	t.Parallel()
	t.Run("launch bucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil) // defaults: 100 burst, 20/s; RunTask 20 burst
		b.api.runTask = launched(fleet.MaxProvision)
		for i := range 10 {
			p, err := b.d.Provision(t.Context(), 10)
			require.NoError(t, err)
			require.Len(t, p.Workers, 10, "call %d within the burst of 100", i)
			require.Empty(t, p.Failures)
			b.clock.Advance(time.Millisecond) // 0.02 tokens: no whole task
		}
		// The burst is spent: nothing launches, and no call is made.
		p, err := b.d.Provision(t.Context(), 10)
		require.NoError(t, err)
		require.Empty(t, p.Workers)
		require.Equal(t, []fleet.Failure{{Count: 10, Reason: "throttled: launch rate", Retryable: true}}, p.Failures)
		require.Len(t, b.api.runs, 10)

		// 250 ms refill 5 tasks (20/s): 5 launch, 5 are reported throttled.
		b.clock.Advance(250 * time.Millisecond)
		p, err = b.d.Provision(t.Context(), 10)
		require.NoError(t, err)
		require.Len(t, p.Workers, 5)
		require.Equal(t, int32(5), aws.ToInt32(b.api.runs[10].Count))
		require.Equal(t, []fleet.Failure{{Count: 5, Reason: "throttled: launch rate", Retryable: true}}, p.Failures)

		// A long pause refills to the burst, not beyond.
		b.clock.Advance(time.Hour)
		for range 10 {
			p, err = b.d.Provision(t.Context(), 10)
			require.NoError(t, err)
			require.Len(t, p.Workers, 10)
		}
		p, err = b.d.Provision(t.Context(), 1)
		require.NoError(t, err)
		require.Empty(t, p.Workers)
	})
	t.Run("RunTask call bucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.api.runTask = launched(1)
		for range DefaultRunTaskRate.Burst {
			p, err := b.d.Provision(t.Context(), 1)
			require.NoError(t, err)
			require.Len(t, p.Workers, 1)
		}
		p, err := b.d.Provision(t.Context(), 1)
		require.NoError(t, err)
		require.Equal(t, []fleet.Failure{{Count: 1, Reason: "throttled: RunTask call rate", Retryable: true}}, p.Failures)
		require.Len(t, b.api.runs, DefaultRunTaskRate.Burst)
		b.clock.Advance(50 * time.Millisecond) // one call at 20/s
		p, err = b.d.Provision(t.Context(), 1)
		require.NoError(t, err)
		require.Len(t, p.Workers, 1)
	})
	t.Run("custom rates", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(o *Options) { o.LaunchRate = Rate{PerSecond: 1, Burst: 3} })
		b.api.runTask = launched(fleet.MaxProvision)
		p, err := b.d.Provision(t.Context(), 10)
		require.NoError(t, err)
		require.Len(t, p.Workers, 3)
		require.Equal(t, []fleet.Failure{{Count: 7, Reason: "throttled: launch rate", Retryable: true}}, p.Failures)
		b.clock.Advance(1500 * time.Millisecond)
		p, err = b.d.Provision(t.Context(), 10)
		require.NoError(t, err)
		require.Len(t, p.Workers, 1)
	})
}

func TestProvisionClientTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.api.runTask = launched(1)
	seen := map[string]bool{}
	for range 20 {
		_, err := b.d.Provision(t.Context(), 1)
		require.NoError(t, err)
	}
	for _, in := range b.api.runs {
		tok := aws.ToString(in.ClientToken)
		require.Regexp(t, tokenRE, tok)
		require.False(t, seen[tok], "client token %s used by two Provision calls", tok)
		seen[tok] = true
	}
}

func TestProvisionSerialized(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	b.api.runTask = func(ctx context.Context, in *ecs.RunTaskInput) (*ecs.RunTaskOutput, error) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return launched(1)(ctx, in)
	}
	first := make(chan error, 1)
	go func() {
		_, err := b.d.Provision(t.Context(), 1)
		first <- err
	}()
	<-entered // the first call is inside RunTask

	// A second call waits for the first, for as long as its context
	// allows, and then gives up without calling ECS.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := b.d.Provision(ctx, 1)
	require.Equal(t, errcode.Canceled, errcode.Of(err), "%v", err)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	runs, _, _, _ := b.api.calls()
	require.Equal(t, 1, runs, "a second RunTask started while the first was in flight")

	close(release)
	require.NoError(t, <-first)
	// Once the first is done, the next one goes through.
	p, err := b.d.Provision(t.Context(), 1)
	require.NoError(t, err)
	require.Len(t, p.Workers, 1)
}
