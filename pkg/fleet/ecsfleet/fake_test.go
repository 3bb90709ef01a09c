package ecsfleet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/clock"
)

// fakeAPI is an ECS API whose answers each test scripts, for what moto
// cannot produce: failures[], throttling, pagination, stop codes. It
// records every input. A call without a script fails the test.
type fakeAPI struct {
	t *testing.T

	runTask       func(context.Context, *ecs.RunTaskInput) (*ecs.RunTaskOutput, error)
	listTasks     func(*ecs.ListTasksInput) (*ecs.ListTasksOutput, error)
	describeTasks func(*ecs.DescribeTasksInput) (*ecs.DescribeTasksOutput, error)
	stopTask      func(*ecs.StopTaskInput) (*ecs.StopTaskOutput, error)

	mu       sync.Mutex
	runs     []*ecs.RunTaskInput
	lists    []*ecs.ListTasksInput
	describe []*ecs.DescribeTasksInput
	stops    []*ecs.StopTaskInput
}

var _ API = (*fakeAPI)(nil)

var errUnscripted = errors.New("unscripted call")

func (f *fakeAPI) RunTask(ctx context.Context, in *ecs.RunTaskInput, _ ...func(*ecs.Options)) (*ecs.RunTaskOutput, error) {
	f.mu.Lock()
	f.runs = append(f.runs, in)
	fn := f.runTask
	f.mu.Unlock()
	if fn == nil {
		f.t.Errorf("unexpected RunTask %+v", in)
		return nil, errUnscripted
	}
	return fn(ctx, in)
}

func (f *fakeAPI) ListTasks(_ context.Context, in *ecs.ListTasksInput, _ ...func(*ecs.Options)) (*ecs.ListTasksOutput, error) {
	f.mu.Lock()
	f.lists = append(f.lists, in)
	fn := f.listTasks
	f.mu.Unlock()
	if fn == nil {
		f.t.Errorf("unexpected ListTasks %+v", in)
		return nil, errUnscripted
	}
	return fn(in)
}

func (f *fakeAPI) DescribeTasks(_ context.Context, in *ecs.DescribeTasksInput, _ ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error) {
	f.mu.Lock()
	f.describe = append(f.describe, in)
	fn := f.describeTasks
	f.mu.Unlock()
	if fn == nil {
		f.t.Errorf("unexpected DescribeTasks %+v", in)
		return nil, errUnscripted
	}
	return fn(in)
}

func (f *fakeAPI) StopTask(_ context.Context, in *ecs.StopTaskInput, _ ...func(*ecs.Options)) (*ecs.StopTaskOutput, error) {
	f.mu.Lock()
	f.stops = append(f.stops, in)
	fn := f.stopTask
	f.mu.Unlock()
	if fn == nil {
		f.t.Errorf("unexpected StopTask %+v", in)
		return nil, errUnscripted
	}
	return fn(in)
}

func (f *fakeAPI) calls() (runs, lists, describes, stops int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.runs), len(f.lists), len(f.describe), len(f.stops)
}

// bundle is one unit test's driver over a fake API and a fake clock.
type bundle struct {
	d     *driver
	api   *fakeAPI
	clock *clock.Fake
}

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func baseOptions() Options {
	return Options{
		Cluster:        "jobs",
		TaskDefinition: "worker:7",
		Subnets:        []string{"subnet-a", "subnet-b"},
		SecurityGroups: []string{"sg-1"},
	}
}

// setup returns a driver on baseOptions, changed by edit if not nil.
func setup(t *testing.T, edit func(*Options)) *bundle {
	t.Helper()
	b := &bundle{api: &fakeAPI{t: t}, clock: clock.NewFake(epoch)}
	o := baseOptions()
	o.Clock = b.clock
	if edit != nil {
		edit(&o)
	}
	d, err := newDriver(b.api, o)
	require.NoError(t, err)
	b.d = d
	return b
}

// apiErr is an ECS error as the SDK returns it: inside an OperationError.
func apiErr(op string, err error) error {
	return &smithy.OperationError{ServiceID: "ECS", OperationName: op, Err: err}
}
