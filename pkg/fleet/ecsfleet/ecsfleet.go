// Package ecsfleet is the aws profile's fleet: ECS tasks on Fargate, one
// worker a task, driven through the ECS API (RunTask, ListTasks,
// DescribeTasks, StopTask). It implements fleet.Driver; Open returns the
// portable *fleet.Fleet over it.
//
// # Contract
//
//   - A worker's ID is its task ARN, the owner the worker reads from the
//     task metadata endpoint and writes into the jobs it runs.
//   - Provision(n), n ≤ fleet.MaxProvision (ECS's limit of 10 a call; more
//     is refused before any call), is one RunTask call with count n on
//     Options.Cluster and Options.TaskDefinition: awsvpc networking in
//     Options.Subnets and Options.SecurityGroups, launch type FARGATE or the
//     capacity provider strategy of Options.CapacityProviders, startedBy
//     Options.StartedBy, Options.Group, Options.Tags, and Options.Env as
//     environment overrides of Options.ContainerName. The returned workers
//     are the tasks ECS accepted (usually PROVISIONING, with CreatedAt).
//     The tasks ECS refused (failures[]) come back as fleet.Failures grouped
//     by reason ("RESOURCE:ENI", "Capacity is unavailable at this time ...",
//     with the failure's detail after a colon when ECS gives one); capacity,
//     RESOURCE:*, AGENT and throttling reasons are Retryable. Started plus
//     failed counts add up to n.
//   - Every RunTask carries a client token, StartedBy plus a ULID: new for
//     each Provision call, and the same on the SDK's retries of that call
//     (the SDK retries the one input it was given), so a retry after a lost
//     answer does not launch the tasks twice. Two Provision calls never
//     share a token. A Provision that fails after ECS acted on it (the
//     context ends while the answer is on its way, the SDK gives up
//     retrying) may have launched tasks that the caller does not see;
//     List shows them.
//   - Provision calls of one Fleet run one at a time (a later call waits,
//     as long as its context allows), so concurrent callers cannot both
//     launch for the same need. Across processes, jobfleet runs one active
//     scaler (elected elsewhere), which is what keeps replicas from
//     double-launching.
//   - List lists the tasks of the cluster in the task definition's family
//     (any revision) with desired status RUNNING and then STOPPED (ECS
//     keeps stopped tasks visible for at least an hour), following
//     nextToken, describes them 100 at a time, and keeps the ones whose
//     startedBy is Options.StartedBy. ECS does not allow startedBy together
//     with the family and desiredStatus filters of ListTasks, so that
//     filter is applied to the described tasks. A task ECS reports MISSING
//     (gone between the calls) is left out; any other describe failure
//     fails the List, so that a caller never counts a partial fleet as
//     whole. Its cost grows with the stopped tasks ECS still shows: one
//     DescribeTasks call per 100 tasks listed. Workers come sorted by
//     CreatedAt, then ID. Health is the
//     task's healthStatus; Addr is the private IPv4 address from the task's
//     network interface attachment ("ElasticNetworkInterface" in the API,
//     "eni" in events; both are read).
//   - Stop(id, reason) describes the task first. A task that does not
//     exist, an id that cannot name a task, or a task not of this fleet
//     (another family or startedBy) is errcode.NotFound; a task already
//     told to stop (desired status STOPPED) or stopped is left alone and
//     Stop succeeds, so the first reason stays. Otherwise StopTask with the
//     reason cut to ECS's 255 bytes (an empty reason leaves ECS's default).
//   - Errors are mapped once, in mapErr: throttling and server errors are
//     errcode.Unavailable, capacity and limits ResourceExhausted (both
//     Retryable), a missing cluster NotFound, other client and parameter
//     errors InvalidArgument, the caller's context Canceled. The AWS SDK's
//     own retries are not wrapped in more. Every call is bounded by the
//     caller's context; the driver starts no goroutines.
//
// # Rate limits
//
// Fargate allows RunTask 20 calls a second and launches 100 tasks at once
// and 20 a second after that (token buckets per account and Region). The
// driver keeps two token buckets of its own on Options.Clock, with those
// defaults (Options.RunTaskRate and Options.LaunchRate): a Provision that
// finds no RunTask call token, or fewer launch tokens than workers asked
// for, does not wait for them. It launches what the bucket allows and
// reports the rest as a Retryable fleet.Failure with reason "throttled:
// RunTask call rate" or "throttled: launch rate", and makes no call when
// nothing may launch. The scaler retries failures with backoff, which is
// the waiting. Tokens of tasks that did not launch (a failed call, failures
// in the answer) are given back. The buckets are per Fleet; other users of
// the account share ECS's real limits, and ECS's ThrottlingException
// remains possible (Unavailable).
//
// # Eventual consistency
//
// The ECS API is eventually consistent: a task RunTask just returned may be
// missing from ListTasks and DescribeTasks for a while. Callers that count
// the fleet (the scaler) give fresh workers a grace period instead of
// provisioning again; Stop of a just-launched task may answer NotFound.
//
// # IAM
//
// The caller needs ecs:RunTask, ecs:ListTasks, ecs:DescribeTasks and
// ecs:StopTask (on the cluster's tasks and the task definition), ecs:TagResource
// when Options.Tags is set (tagging on create), and iam:PassRole for the
// task definition's task role and execution role.
//
// # moto
//
// The conformance suite runs against a moto server (pkg/awstest). moto
// 5.2.1 differs from ECS in ways the tests work around, never this package:
// it writes containers[].cpu and memory as JSON numbers, which the Go SDK
// cannot read (a test-only middleware rewrites them); it sets no
// createdAt, startedAt, stoppedAt or stopCode (a test-only wrapper supplies
// them); it emits no task state change events (the suite's event cases
// skip); tasks start RUNNING at once, with no PROVISIONING or PENDING;
// RunTask does not validate count, returns no failures and ignores the
// client token; capacityProviderStrategy needs moto 5.2.3 or later;
// ListTasks does not paginate; DescribeTasks returns no MISSING failures
// for unknown tasks (an unknown id is simply absent, which Stop also reads
// as NotFound) and matches ids by substring; StopTask of an unknown task is
// an HTTP 500 (Stop never gets there: it describes the task first).
package ecsfleet

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/oklog/ulid/v2"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// Defaults and ECS limits.
const (
	// DefaultStartedBy marks jobfleet's tasks (RunTask startedBy).
	DefaultStartedBy = "jobfleet"
	// MaxStartedBy is the longest StartedBy: it prefixes a 26-character
	// ULID in the client token, whose limit is 64 characters.
	MaxStartedBy = 36
	// MaxStopReason is the longest stop reason ECS keeps, in bytes.
	MaxStopReason = 255
	// MaxSubnets and MaxSecurityGroups are awsvpcConfiguration's limits.
	MaxSubnets        = 16
	MaxSecurityGroups = 5
	// MaxTags is the most tags a task can have.
	MaxTags = 50

	// describeBatch is the most tasks one DescribeTasks call takes.
	describeBatch = 100
	// listPage is the page size asked of ListTasks.
	listPage = 100

	reasonCallRate   = "throttled: RunTask call rate"
	reasonLaunchRate = "throttled: launch rate"
	reasonMissing    = "MISSING"
)

// Default rates: Fargate's RunTask quota and task launch rate.
var (
	DefaultRunTaskRate = Rate{PerSecond: 20, Burst: 20}
	DefaultLaunchRate  = Rate{PerSecond: 20, Burst: 100}
)

// API is the part of the ECS client the fleet uses; *ecs.Client satisfies
// it.
type API interface {
	RunTask(ctx context.Context, in *ecs.RunTaskInput, optFns ...func(*ecs.Options)) (*ecs.RunTaskOutput, error)
	ListTasks(ctx context.Context, in *ecs.ListTasksInput, optFns ...func(*ecs.Options)) (*ecs.ListTasksOutput, error)
	DescribeTasks(ctx context.Context, in *ecs.DescribeTasksInput, optFns ...func(*ecs.Options)) (*ecs.DescribeTasksOutput, error)
	StopTask(ctx context.Context, in *ecs.StopTaskInput, optFns ...func(*ecs.Options)) (*ecs.StopTaskOutput, error)
}

var _ API = (*ecs.Client)(nil)

// Options configure the fleet. Cluster, TaskDefinition and Subnets are
// required; the rest have the defaults noted.
type Options struct {
	// Cluster is the cluster's short name or ARN. Required.
	Cluster string
	// TaskDefinition is the worker's task definition: "family",
	// "family:revision" or its ARN. Without a revision, ECS runs the latest
	// ACTIVE one. Required.
	TaskDefinition string
	// Subnets are the subnets the tasks' network interfaces go in (1 to
	// 16). Required.
	Subnets []string
	// SecurityGroups are the tasks' security groups (up to 5); none means
	// the VPC's default group.
	SecurityGroups []string
	// AssignPublicIP gives each task a public IP (needed in public subnets
	// without a NAT gateway to pull images).
	AssignPublicIP bool
	// CapacityProviders, if set, make a capacity provider strategy instead
	// of launch type FARGATE. Each entry is "NAME", "NAME:WEIGHT" or
	// "NAME:WEIGHT:BASE" (weight 0..1000, default 1; base 0..100000,
	// default 0, on at most one entry), e.g. ["FARGATE_SPOT:3",
	// "FARGATE:1:1"]: one task on FARGATE first, then three Spot tasks for
	// each on-demand one.
	CapacityProviders []string
	// ContainerName is the worker container, which Env overrides; required
	// when Env is set.
	ContainerName string
	// Env is extra environment for the worker container, "NAME=value" each.
	Env []string
	// Tags tag every task (up to 50; keys up to 128 bytes, values up to
	// 256, neither starting with "aws:").
	Tags map[string]string
	// StartedBy marks the fleet's tasks: List and Stop only see tasks with
	// this startedBy. Letters, digits, '-', '_' and '/', at most
	// MaxStartedBy characters. Default DefaultStartedBy.
	StartedBy string
	// Group is the tasks' task group; empty means ECS's default,
	// "family:<family>".
	Group string
	// RunTaskRate limits RunTask calls. Default DefaultRunTaskRate.
	RunTaskRate Rate
	// LaunchRate limits tasks launched. Default DefaultLaunchRate.
	LaunchRate Rate
	// Clock drives the rate limits and the client tokens' time. Default the
	// system clock.
	Clock clock.Clock
}

var (
	startedByRE = regexp.MustCompile(`^[A-Za-z0-9_/-]+$`)
	envNameRE   = regexp.MustCompile(`^[^=\x00]+$`)
)

func (o *Options) validate() error {
	bad := func(format string, args ...any) error {
		return errcode.New(errcode.InvalidArgument, "ecsfleet: "+format, args...)
	}
	switch {
	case o.Cluster == "":
		return bad("Options.Cluster is required")
	case o.TaskDefinition == "" || Family(o.TaskDefinition) == "":
		return bad("Options.TaskDefinition %q is not a family, family:revision or task definition ARN", o.TaskDefinition)
	case len(o.Subnets) == 0:
		return bad("Options.Subnets is required (the awsvpc subnets the tasks run in)")
	case len(o.Subnets) > MaxSubnets:
		return bad("%d subnets; ECS allows %d", len(o.Subnets), MaxSubnets)
	case len(o.SecurityGroups) > MaxSecurityGroups:
		return bad("%d security groups; ECS allows %d", len(o.SecurityGroups), MaxSecurityGroups)
	case slices.Contains(o.Subnets, ""):
		return bad("an empty subnet id")
	case slices.Contains(o.SecurityGroups, ""):
		return bad("an empty security group id")
	case len(o.StartedBy) > MaxStartedBy || !startedByRE.MatchString(o.StartedBy):
		return bad("Options.StartedBy %q: want 1..%d letters, digits, '-', '_' or '/'", o.StartedBy, MaxStartedBy)
	case len(o.Env) > 0 && o.ContainerName == "":
		return bad("Options.Env needs Options.ContainerName (the container to override)")
	case len(o.Group) > 255:
		return bad("Options.Group is %d bytes; ECS allows 255", len(o.Group))
	case len(o.Tags) > MaxTags:
		return bad("%d tags; ECS allows %d", len(o.Tags), MaxTags)
	}
	for _, kv := range o.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(name) {
			return bad("Options.Env entry %q is not NAME=value", kv)
		}
	}
	for k, v := range o.Tags {
		switch {
		case k == "" || len(k) > 128 || !utf8.ValidString(k):
			return bad("tag key %q: want 1..128 bytes of UTF-8", k)
		case len(v) > 256 || !utf8.ValidString(v):
			return bad("tag %q: value longer than 256 bytes or not UTF-8", k)
		case strings.HasPrefix(strings.ToLower(k), "aws:") || strings.HasPrefix(strings.ToLower(v), "aws:"):
			return bad("tag %q: the aws: prefix is reserved", k)
		}
	}
	for name, r := range map[string]Rate{"RunTaskRate": o.RunTaskRate, "LaunchRate": o.LaunchRate} {
		if r.PerSecond <= 0 || r.Burst < 1 {
			return bad("Options.%s %+v: want a positive rate and a burst of at least 1", name, r)
		}
	}
	return nil
}

// strategy parses Options.CapacityProviders.
func strategy(entries []string) ([]types.CapacityProviderStrategyItem, error) {
	bad := func(format string, args ...any) ([]types.CapacityProviderStrategyItem, error) {
		return nil, errcode.New(errcode.InvalidArgument, "ecsfleet: Options.CapacityProviders: "+format, args...)
	}
	var out []types.CapacityProviderStrategyItem
	bases, weight := 0, 0
	for _, e := range entries {
		parts := strings.Split(e, ":")
		if parts[0] == "" || len(parts) > 3 {
			return bad("%q is not NAME[:WEIGHT[:BASE]]", e)
		}
		item := types.CapacityProviderStrategyItem{CapacityProvider: aws.String(parts[0]), Weight: 1}
		if len(parts) > 1 {
			w, err := strconv.Atoi(parts[1])
			if err != nil || w < 0 || w > 1000 {
				return bad("%q: weight must be 0..1000", e)
			}
			item.Weight = int32(w)
		}
		if len(parts) > 2 {
			b, err := strconv.Atoi(parts[2])
			if err != nil || b < 0 || b > 100000 {
				return bad("%q: base must be 0..100000", e)
			}
			item.Base = int32(b)
			if b > 0 {
				bases++
			}
		}
		weight += int(item.Weight)
		out = append(out, item)
	}
	switch {
	case bases > 1:
		return bad("only one capacity provider may have a base")
	case len(out) > 0 && weight == 0:
		return bad("at least one capacity provider needs a weight above 0")
	}
	return out, nil
}

type driver struct {
	api      API
	o        Options
	family   string
	clock    clock.Clock
	strategy []types.CapacityProviderStrategyItem
	env      []types.KeyValuePair
	tags     []types.Tag

	// sem admits one Provision at a time; the buckets are used under it.
	sem      chan struct{}
	calls    *bucket
	launches *bucket
}

var _ fleet.Driver = (*driver)(nil)

// Open returns a fleet of ECS tasks on client. It validates opts and makes
// no call: a missing cluster or task definition shows in the first
// Provision, List or Stop.
func Open(ctx context.Context, client API, opts Options) (*fleet.Fleet, error) {
	d, err := newDriver(client, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, errcode.Wrap(errcode.Canceled, err, "ecsfleet: open")
	}
	return fleet.New(d), nil
}

func newDriver(client API, opts Options) (*driver, error) {
	if client == nil {
		return nil, errcode.New(errcode.InvalidArgument, "ecsfleet: no ECS client")
	}
	o := opts
	if o.StartedBy == "" {
		o.StartedBy = DefaultStartedBy
	}
	if o.RunTaskRate == (Rate{}) {
		o.RunTaskRate = DefaultRunTaskRate
	}
	if o.LaunchRate == (Rate{}) {
		o.LaunchRate = DefaultLaunchRate
	}
	o.Clock = clock.Or(o.Clock)
	if err := o.validate(); err != nil {
		return nil, err
	}
	strat, err := strategy(o.CapacityProviders)
	if err != nil {
		return nil, err
	}
	o.Subnets = slices.Clone(o.Subnets)
	o.SecurityGroups = slices.Clone(o.SecurityGroups)
	d := &driver{
		api:      client,
		o:        o,
		family:   Family(o.TaskDefinition),
		clock:    o.Clock,
		strategy: strat,
		sem:      make(chan struct{}, 1),
	}
	for _, kv := range o.Env {
		name, value, _ := strings.Cut(kv, "=")
		d.env = append(d.env, types.KeyValuePair{Name: aws.String(name), Value: aws.String(value)})
	}
	for _, k := range slices.Sorted(maps.Keys(o.Tags)) {
		d.tags = append(d.tags, types.Tag{Key: aws.String(k), Value: aws.String(o.Tags[k])})
	}
	now := d.clock.Now()
	d.calls = newBucket(o.RunTaskRate, now)
	d.launches = newBucket(o.LaunchRate, now)
	return d, nil
}

func canceled(err error, what string) error {
	return errcode.Wrap(errcode.Canceled, err, "ecsfleet: %s", what)
}

// clientToken returns a fresh RunTask client token: StartedBy, "-", and a
// ULID (time from the fleet's clock, 80 random bits). At most 63
// characters, all in ECS's allowed range.
func (d *driver) clientToken() string {
	id, err := ulid.New(ulid.Timestamp(d.clock.Now()), rand.Reader)
	if err != nil { // a clock beyond ULID's range (before 1970, after 10889)
		id = ulid.Make()
	}
	return d.o.StartedBy + "-" + id.String()
}

func (d *driver) runTaskInput(count int) *ecs.RunTaskInput {
	assign := types.AssignPublicIpDisabled
	if d.o.AssignPublicIP {
		assign = types.AssignPublicIpEnabled
	}
	in := &ecs.RunTaskInput{
		TaskDefinition: aws.String(d.o.TaskDefinition),
		Cluster:        aws.String(d.o.Cluster),
		Count:          aws.Int32(int32(count)),
		ClientToken:    aws.String(d.clientToken()),
		StartedBy:      aws.String(d.o.StartedBy),
		NetworkConfiguration: &types.NetworkConfiguration{AwsvpcConfiguration: &types.AwsVpcConfiguration{
			Subnets: slices.Clone(d.o.Subnets),
			// Always sent, even empty: ECS then uses the VPC's default
			// group (and moto needs the key).
			SecurityGroups: append([]string{}, d.o.SecurityGroups...),
			AssignPublicIp: assign,
		}},
		Tags: slices.Clone(d.tags),
	}
	if d.o.Group != "" {
		in.Group = aws.String(d.o.Group)
	}
	if len(d.strategy) > 0 {
		in.CapacityProviderStrategy = slices.Clone(d.strategy)
	} else {
		in.LaunchType = types.LaunchTypeFargate
	}
	if len(d.env) > 0 {
		in.Overrides = &types.TaskOverride{ContainerOverrides: []types.ContainerOverride{{
			Name:        aws.String(d.o.ContainerName),
			Environment: slices.Clone(d.env),
		}}}
	}
	return in
}

// Provision launches n tasks with one RunTask call; see the package doc.
func (d *driver) Provision(ctx context.Context, n int) (fleet.Provisioned, error) {
	if n < 1 || n > fleet.MaxProvision {
		return fleet.Provisioned{}, errcode.New(errcode.InvalidArgument, "ecsfleet: provision %d tasks: want 1..%d a call", n, fleet.MaxProvision)
	}
	what := fmt.Sprintf("provision %d tasks", n)
	if err := ctx.Err(); err != nil {
		return fleet.Provisioned{}, canceled(err, what)
	}
	select {
	case d.sem <- struct{}{}:
	case <-ctx.Done():
		return fleet.Provisioned{}, canceled(ctx.Err(), what)
	}
	defer func() { <-d.sem }()
	if err := ctx.Err(); err != nil {
		return fleet.Provisioned{}, canceled(err, what)
	}

	now := d.clock.Now()
	if d.calls.take(now, 1) == 0 {
		return fleet.Provisioned{Failures: []fleet.Failure{{Count: n, Reason: reasonCallRate, Retryable: true}}}, nil
	}
	k := d.launches.take(now, n)
	if k == 0 {
		d.calls.refund(1)
		return fleet.Provisioned{Failures: []fleet.Failure{{Count: n, Reason: reasonLaunchRate, Retryable: true}}}, nil
	}
	out, err := d.api.RunTask(ctx, d.runTaskInput(k))
	if err != nil {
		d.launches.refund(k)
		return fleet.Provisioned{}, mapErr(ctx, err, fmt.Sprintf("run %d tasks in cluster %s", k, d.o.Cluster))
	}
	var p fleet.Provisioned
	for _, t := range out.Tasks {
		if len(p.Workers) == k {
			break
		}
		p.Workers = append(p.Workers, worker(t, d.o.ContainerName))
	}
	if missing := k - len(p.Workers); missing > 0 {
		d.launches.refund(missing)
		p.Failures = failures(out.Failures, missing)
	}
	if k < n {
		p.Failures = append(p.Failures, fleet.Failure{Count: n - k, Reason: reasonLaunchRate, Retryable: true})
	}
	return p, nil
}

// failures groups RunTask's failures[] by reason, in order of first
// appearance, into fleet.Failures whose counts add up to missing (the tasks
// asked for and not returned). ECS usually lists one failure per task not
// started; when the list is shorter the first reason takes the rest, when
// longer the last reasons give way.
func failures(fs []types.Failure, missing int) []fleet.Failure {
	var out []fleet.Failure
	index := map[string]int{}
	total := 0
	for _, f := range fs {
		r := aws.ToString(f.Reason)
		if det := aws.ToString(f.Detail); det != "" {
			if r == "" {
				r = det
			} else {
				r += ": " + det
			}
		}
		if r == "" {
			r = "unknown"
		}
		i, ok := index[r]
		if !ok {
			i = len(out)
			index[r] = i
			out = append(out, fleet.Failure{Reason: r, Retryable: failureRetryable(r)})
		}
		out[i].Count++
		total++
	}
	if len(out) == 0 {
		return []fleet.Failure{{Count: missing, Reason: "RunTask started fewer tasks than asked and gave no reason", Retryable: true}}
	}
	if total < missing {
		out[0].Count += missing - total
	}
	for i := len(out) - 1; total > missing; i-- {
		cut := min(out[i].Count, total-missing)
		out[i].Count -= cut
		total -= cut
	}
	return slices.DeleteFunc(out, func(f fleet.Failure) bool { return f.Count == 0 })
}

// ours reports whether the task belongs to this fleet: its startedBy, and
// its task definition's family when ECS names it.
func (d *driver) ours(t types.Task) bool {
	if aws.ToString(t.StartedBy) != d.o.StartedBy {
		return false
	}
	td := aws.ToString(t.TaskDefinitionArn)
	return td == "" || Family(td) == d.family
}

// List lists the fleet's tasks; see the package doc.
func (d *driver) List(ctx context.Context) ([]fleet.Worker, error) {
	if err := ctx.Err(); err != nil {
		return nil, canceled(err, "list tasks")
	}
	var arns []string
	seen := map[string]bool{}
	for _, status := range []types.DesiredStatus{types.DesiredStatusRunning, types.DesiredStatusStopped} {
		var token *string
		for {
			out, err := d.api.ListTasks(ctx, &ecs.ListTasksInput{
				Cluster:       aws.String(d.o.Cluster),
				Family:        aws.String(d.family),
				DesiredStatus: status,
				MaxResults:    aws.Int32(listPage),
				NextToken:     token,
			})
			if err != nil {
				return nil, mapErr(ctx, err, fmt.Sprintf("list %s tasks of family %s in cluster %s", status, d.family, d.o.Cluster))
			}
			for _, a := range out.TaskArns {
				if !seen[a] {
					seen[a] = true
					arns = append(arns, a)
				}
			}
			next := aws.ToString(out.NextToken)
			if next == "" {
				break
			}
			if next == aws.ToString(token) {
				return nil, errcode.New(errcode.Internal, "ecsfleet: list tasks: ECS returned the same nextToken twice")
			}
			token = aws.String(next)
		}
	}

	ws := make([]fleet.Worker, 0, len(arns))
	listed := map[string]bool{}
	for batch := range slices.Chunk(arns, describeBatch) {
		out, err := d.api.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(d.o.Cluster), Tasks: batch})
		if err != nil {
			return nil, mapErr(ctx, err, fmt.Sprintf("describe %d tasks in cluster %s", len(batch), d.o.Cluster))
		}
		for _, f := range out.Failures {
			if r := aws.ToString(f.Reason); r != reasonMissing {
				return nil, errcode.New(errcode.Unavailable, "ecsfleet: describe task %s: %s %s", aws.ToString(f.Arn), r, aws.ToString(f.Detail))
			}
		}
		for _, t := range out.Tasks {
			id := aws.ToString(t.TaskArn)
			if id == "" || listed[id] || !d.ours(t) {
				continue
			}
			listed[id] = true
			ws = append(ws, worker(t, d.o.ContainerName))
		}
	}
	slices.SortFunc(ws, func(a, b fleet.Worker) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return ws, nil
}

// Stop stops the task id; see the package doc.
func (d *driver) Stop(ctx context.Context, id, reason string) error {
	what := "stop task " + id
	if err := ctx.Err(); err != nil {
		return canceled(err, what)
	}
	out, err := d.api.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(d.o.Cluster), Tasks: []string{id}})
	if err != nil {
		// The cluster is checked apart (ClusterNotFoundException), so a
		// parameter error about the one id given means it names no task.
		if ctx.Err() == nil && isCode(err, codeInvalidParameter) && !throttled(err.Error()) {
			return errcode.Wrap(errcode.NotFound, err, "ecsfleet: %s", what)
		}
		return mapErr(ctx, err, what)
	}
	var task *types.Task
	for i, t := range out.Tasks {
		if arn := aws.ToString(t.TaskArn); arn == id || strings.HasSuffix(arn, "/"+id) {
			task = &out.Tasks[i]
			break
		}
	}
	if task == nil {
		for _, f := range out.Failures {
			if r := aws.ToString(f.Reason); r != reasonMissing {
				return errcode.New(errcode.Unavailable, "ecsfleet: %s: describe failed: %s %s", what, r, aws.ToString(f.Detail))
			}
		}
		return errcode.New(errcode.NotFound, "ecsfleet: %s: no such task in cluster %s", what, d.o.Cluster)
	}
	if !d.ours(*task) {
		return errcode.New(errcode.NotFound, "ecsfleet: %s: not a task of this fleet (startedBy %q, task definition %s)",
			what, aws.ToString(task.StartedBy), aws.ToString(task.TaskDefinitionArn))
	}
	if aws.ToString(task.DesiredStatus) == fleet.StatusStopped || aws.ToString(task.LastStatus) == fleet.StatusStopped {
		return nil
	}
	in := &ecs.StopTaskInput{Cluster: aws.String(d.o.Cluster), Task: task.TaskArn}
	if reason != "" {
		in.Reason = aws.String(truncate(reason, MaxStopReason))
	}
	if _, err := d.api.StopTask(ctx, in); err != nil {
		if ctx.Err() == nil && taskNotFound(err) {
			return errcode.Wrap(errcode.NotFound, err, "ecsfleet: %s", what)
		}
		return mapErr(ctx, err, what)
	}
	return nil
}

// Close releases nothing: the driver holds no resources beyond the client,
// which the caller owns. fleet.Fleet refuses calls after Close.
func (d *driver) Close() error { return nil }

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
