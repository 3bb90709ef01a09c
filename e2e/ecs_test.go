package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/dispatcher"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet/ecsmoto"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/profile/fleets"
	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/reaper"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// The ECS fleet end to end on the aws profile (DynamoDB, SQS and ECS on
// moto): the scaler launches tasks with the configured network, tags and
// worker environment after capacity failures, which the waiting job's
// detail shows; a STOPPED task state change event reclaims its job at once;
// a Spot interruption notice re-queues the job at once without spending an
// attempt, and the interrupted worker's drain does not disturb it.
//
// The pieces run in this process: the dispatcher's scaler and service, the
// reaper, and a worker core for each task (nothing runs inside a moto task,
// and moto neither emits ECS events nor stops tasks on its own). Events are
// sent to the events queue as EventBridge would deliver them.
func TestECSFleetOnMoto(t *testing.T) {
	t.Parallel()
	if !awstest.IsMoto(t) {
		// It plays the tasks' part in process and patches what moto's ECS
		// answers; against LocalStack or AWS the tasks would be real.
		t.Skip("the ECS fleet e2e runs on the moto server the suite starts (AWS_ENDPOINT_URL is set)")
	}
	ctx := t.Context()
	awsCfg := awstest.Config(t)
	ecsClient := ecs.NewFromConfig(awsCfg, ecsmoto.Fix)
	cluster := awstest.Name(t)
	taskDef := ecsmoto.CreateTaskFamily(t, ecsClient, cluster)
	subnets := ecsmoto.DefaultSubnets(t, ec2.NewFromConfig(awsCfg))
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	prefix := "e2e-ecs-" + hex.EncodeToString(suffix[:])
	cfg, err := config.Load(options{
		"JOBFLEET_PROFILE": config.ProfileAWS, "JOBFLEET_RESOURCE_PREFIX": prefix,
		"JOBFLEET_ECS_CLUSTER": cluster, "JOBFLEET_ECS_TASK_DEFINITION": taskDef,
		"JOBFLEET_ECS_SUBNETS": subnets[0], "JOBFLEET_ECS_ASSIGN_PUBLIC_IP": "true",
		"JOBFLEET_ECS_TAGS":  "team=jobs,deployment=" + prefix,
		"JOBFLEET_HEARTBEAT": "1s", "JOBFLEET_LEASE": "10s", "JOBFLEET_SWEEP": "1s",
		"JOBFLEET_MAX_WORKERS": "2", "JOBFLEET_CONCURRENCY": "1", "JOBFLEET_JOB_TYPES": "block",
	}.getenv)
	require.NoError(t, err)
	// A reclaim through the events queue must beat the 10 s lease by a
	// margin that shows the event did it. (The 3 s goal for the fleet
	// event is measured by the bench's failover scenario, not asserted on
	// an emulator under the suite's load.)
	const eventBound = 6 * time.Second
	clients := profile.NewClients(awsCfg)
	require.NoError(t, profile.BootstrapAWS(ctx, cfg, clients, slog.New(slog.DiscardHandler)))
	b, err := profile.OpenAWSWith(ctx, cfg, clients)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	m := metrics.New()

	// RunTask reports no capacity twice (as failures[], the way Fargate
	// does), then launches.
	moto := ecsmoto.New(ecsClient)
	api := &noCapacity{API: moto, left: 2}
	fl, err := ecsfleet.Open(ctx, api, fleets.ECSOptions(cfg))
	require.NoError(t, err)
	t.Cleanup(func() { fl.Close() })
	scaler := dispatcher.NewScaler(fl, b.Work, &dispatcher.ScalerOptions{
		PerWorker: cfg.Concurrency, Min: cfg.MinWorkers, Max: cfg.MaxWorkers, Interval: 200 * time.Millisecond,
		Store: b.Store, Policy: cfg.Policy(), Metrics: m,
	})
	require.NoError(t, scaler.Start(ctx))
	t.Cleanup(scaler.Stop)
	svc := dispatcher.NewService(b.Store, b.Work, b.Blob, &dispatcher.Options{
		Policy: cfg.Policy(), Limits: cfg.Limits(), InlineLimit: cfg.InlineLimit, Metrics: m, OnEnqueue: scaler.Wake,
	})
	rp := reaper.New(b.Store, b.Work, &reaper.Options{
		Policy: cfg.Policy(), Sweep: cfg.Sweep, WorkDLQ: b.WorkDLQ, Events: b.Events, EventsDLQ: b.EventsDLQ,
		EventsWait: time.Second, OrphanPoll: b.OrphanPoll, Metrics: m,
	})
	require.NoError(t, rp.Start(ctx))
	t.Cleanup(rp.Stop)

	// Handlers block until their context ends: a job runs until its worker
	// loses it or drains.
	reg := worker.NewRegistry()
	reg.Handle("block", worker.HandlerFunc(func(ctx context.Context, _ *worker.Job) (json.RawMessage, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	startWorker := func(taskARN string, drain time.Duration) *worker.Worker {
		w, err := worker.New(taskARN, b.Store, b.Work, b.Blob, reg, &worker.Options{
			DLQ: b.WorkDLQ, Policy: cfg.Policy(), Concurrency: cfg.Concurrency, Heartbeat: cfg.Heartbeat,
			Visibility: cfg.Visibility, DrainTimeout: drain, ReceiveWait: time.Second, Metrics: m,
		})
		require.NoError(t, err)
		require.NoError(t, w.Start(context.Background()))
		t.Cleanup(w.Stop)
		return w
	}
	submit := func() *job.Job {
		res, err := svc.Submit(ctx, dispatcher.Request{Submission: job.Submission{Type: "block"}})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		return res[0].Job
	}
	get := func(id string) *job.Job {
		j, err := b.Store.Get(ctx, id)
		require.NoError(t, err)
		return j
	}
	// newTask waits for the scaler to have a task running beyond those in
	// known, and returns its ARN.
	newTask := func(known ...string) string {
		var arn string
		require.Eventually(t, func() bool {
			ws, err := fl.List(ctx)
			require.NoError(t, err)
			for _, w := range ws {
				if w.Active() && !slices.Contains(known, w.ID) {
					arn = w.ID
					return true
				}
			}
			return false
		}, 30*time.Second, 50*time.Millisecond, "no new task")
		return arn
	}
	event := func(arn, last, stopCode, reason string, exit *int, version int64) {
		now := time.Now().UTC()
		e := fleet.Event{
			EventID: hex.EncodeToString(suffix[:]) + arn[len(arn)-8:] + last, Source: "aws.ecs", Time: now,
			WorkerID: arn, Cluster: cluster, LastStatus: last, DesiredStatus: fleet.StatusStopped,
			StopCode: stopCode, Reason: reason, ExitCode: exit, Version: version,
			CreatedAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Minute),
		}
		if last == fleet.StatusStopped {
			e.StoppedAt = now
		}
		res, err := b.Events.Send(ctx, queue.SendEntry{Body: e.Marshal()})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
	}

	// 1. A job arrives with no workers: capacity fails twice, the job says
	// why it waits, then a task is launched with the configured network,
	// tags and environment.
	a := submit()
	require.Eventually(t, func() bool { return get(a.ID).Detail != "" }, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, get(a.ID).Detail, "waiting for capacity: Capacity is unavailable")
	task1 := newTask()
	require.Equal(t, int32(0), api.remaining(), "launched after the failures, not before")
	require.Eventually(t, func() bool { return get(a.ID).Detail == "" }, 10*time.Second, 20*time.Millisecond, "the note is cleared once a task runs")
	// The request's network: ECS answers with the subnet (below), but no
	// task field says whether a public IP was asked for, so that is
	// checked on the request.
	in := api.launched()
	require.NotNil(t, in.NetworkConfiguration)
	require.Equal(t, []string{subnets[0]}, in.NetworkConfiguration.AwsvpcConfiguration.Subnets)
	require.Equal(t, ecstypes.AssignPublicIpEnabled, in.NetworkConfiguration.AwsvpcConfiguration.AssignPublicIp)
	require.Equal(t, ecstypes.LaunchTypeFargate, in.LaunchType)
	require.NotEmpty(t, aws.ToString(in.ClientToken))
	env := map[string]string{}
	for _, kv := range in.Overrides.ContainerOverrides[0].Environment {
		env[aws.ToString(kv.Name)] = aws.ToString(kv.Value)
	}
	require.Equal(t, b.Work.Name(), env["JOBFLEET_WORK_QUEUE"])
	require.Equal(t, cfg.Table, env["JOBFLEET_TABLE"])
	// What ECS holds, found as an operator would: by startedBy.
	listed, err := ecsClient.ListTasks(ctx, &ecs.ListTasksInput{Cluster: aws.String(cluster), StartedBy: aws.String(ecsfleet.DefaultStartedBy)})
	require.NoError(t, err)
	require.Contains(t, listed.TaskArns, task1)
	desc, err := ecsClient.DescribeTasks(ctx, &ecs.DescribeTasksInput{Cluster: aws.String(cluster), Tasks: []string{task1}, Include: []ecstypes.TaskField{ecstypes.TaskFieldTags}})
	require.NoError(t, err)
	require.Len(t, desc.Tasks, 1)
	tags := map[string]string{}
	for _, tg := range desc.Tasks[0].Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	require.Equal(t, map[string]string{"team": "jobs", "deployment": prefix}, tags)
	require.Equal(t, "family:"+cluster, aws.ToString(desc.Tasks[0].Group))
	// The task's network interface is in the configured subnet, and its
	// address is the one the fleet lists for the worker.
	eni := map[string]string{}
	for _, at := range desc.Tasks[0].Attachments {
		if aws.ToString(at.Type) != "ElasticNetworkInterface" {
			continue
		}
		for _, d := range at.Details {
			eni[aws.ToString(d.Name)] = aws.ToString(d.Value)
		}
	}
	require.Equal(t, subnets[0], eni["subnetId"], "attachments: %+v", desc.Tasks[0].Attachments)
	require.NotEmpty(t, eni["privateIPv4Address"])
	ws, err := fl.List(ctx)
	require.NoError(t, err)
	addrs := map[string]string{}
	for _, w := range ws {
		addrs[w.ID] = w.Addr
	}
	require.Equal(t, eni["privateIPv4Address"], addrs[task1])

	// 2. The task runs the job, then dies: its essential container is
	// killed (exit 137), which on Fargate is the OOM killer. Its STOPPED
	// event reclaims the job at once, an attempt spent, and a new task
	// runs it.
	w1 := startWorker(task1, time.Minute)
	require.Eventually(t, func() bool { j := get(a.ID); return j.Status == job.Running && j.Owner == task1 }, 30*time.Second, 20*time.Millisecond)
	// What ECS lists for such a task (moto only stops tasks on request):
	// stop code EssentialContainerExited, the container's exit code 137
	// and its OutOfMemoryError reason.
	moto.Exit(task1, 137, "OutOfMemoryError: Container killed due to memory usage")
	_, err = ecsClient.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(task1), Reason: aws.String("moto: stand-in for the container's exit")})
	require.NoError(t, err)
	// The dead task's worker takes no more work (in ECS it is gone); the
	// job it held stays RUNNING in its name until the event.
	w1gone := make(chan struct{})
	go func() { defer close(w1gone); w1.Stop() }()
	sent := time.Now()
	event(task1, fleet.StatusStopped, fleet.StopEssentialContainerExited, "Essential container in task exited", aws.Int(137), 3)
	require.Eventually(t, func() bool { return get(a.ID).Status == job.Queued }, 10*time.Second, 10*time.Millisecond, "the STOPPED event did not reclaim the job")
	reclaimed := time.Since(sent)
	j := get(a.ID)
	require.Equal(t, 1, j.Failures, "an OOM spends an attempt")
	select { // its next heartbeat finds the lease lost; it commits nothing
	case <-w1gone:
	case <-time.After(10 * time.Second):
		t.Fatal("the dead task's worker did not let go of its job")
	}
	task2 := newTask(task1)
	w2 := startWorker(task2, time.Minute)
	require.Eventually(t, func() bool { j := get(a.ID); return j.Status == job.Running && j.Owner == task2 }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, 2, get(a.ID).Attempt)
	t.Logf("STOPPED event → job re-queued in %s", reclaimed.Round(time.Millisecond))
	require.Less(t, reclaimed, eventBound)

	// 3. A Spot interruption: ECS sends the notice (still RUNNING, desired
	// STOPPED, stop code SpotInterruption) and SIGTERM to the task at once,
	// about two minutes before it stops. The reaper re-queues the job on the
	// notice, no attempt spent, so it can start elsewhere at once. The
	// worker drains meanwhile (its budget, a minute here, outlasts the
	// reaper), finds its lease lost at its next heartbeat and writes
	// nothing: its writes are fenced. The task's STOPPED event then finds
	// nothing left to reclaim.
	failures := get(a.ID).Failures
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		w2.Stop() // what SIGTERM does in the worker binary
	}()
	sent = time.Now()
	event(task2, fleet.StatusRunning, fleet.StopSpotInterruption, "Your Spot Task was interrupted.", nil, 2)
	require.Eventually(t, func() bool { return get(a.ID).Status == job.Queued }, 10*time.Second, 10*time.Millisecond, "the Spot notice did not re-queue the job")
	requeued := time.Since(sent)
	j = get(a.ID)
	t.Logf("Spot notice → job re-queued in %s", requeued.Round(time.Millisecond))
	require.Less(t, requeued, eventBound)
	require.Equal(t, failures, j.Failures, "an interruption spends no attempt")
	require.Equal(t, 2, j.Attempt, "not started again yet")
	last := j.History[len(j.History)-1]
	require.Equal(t, job.OutcomeInterrupted, last.Outcome, "re-queued by the reaper, not handed back by the drain")
	require.Equal(t, task2, last.Owner)
	require.Contains(t, last.Reason, "told to stop (spot)")
	select {
	case <-drained:
	case <-time.After(10 * time.Second):
		t.Fatal("the interrupted worker did not give up its job at its next heartbeat")
	}
	require.Equal(t, j.Rev, get(a.ID).Rev, "the interrupted worker's drain changed nothing")

	_, err = ecsClient.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(cluster), Task: aws.String(task2), Reason: aws.String("Your Spot Task was interrupted.")})
	require.NoError(t, err)
	event(task2, fleet.StatusStopped, fleet.StopSpotInterruption, "Your Spot Task was interrupted.", aws.Int(0), 3)
	// The reaper handles the event (and deletes it) and leaves the
	// re-queued job alone.
	require.Eventually(t, func() bool {
		d, err := b.Events.Depth(ctx)
		require.NoError(t, err)
		return d == queue.Depth{}
	}, 10*time.Second, 20*time.Millisecond, "the events were not handled")
	require.Equal(t, j.Rev, get(a.ID).Rev, "the STOPPED event reclaimed nothing")
	// Stops are counted once each, classified from the events: exit 137
	// as OOM, the notice not at all, the Spot stop as spot.
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	var stops []string
	for line := range strings.Lines(rec.Body.String()) {
		if strings.HasPrefix(line, "jobfleet_fleet_stops_total{") {
			stops = append(stops, strings.TrimSpace(line))
		}
	}
	require.ElementsMatch(t, []string{`jobfleet_fleet_stops_total{class="oom"} 1`, `jobfleet_fleet_stops_total{class="spot"} 1`}, stops)

	// Another task starts the job: attempt 3, still one failure.
	task3 := newTask(task1, task2)
	startWorker(task3, 500*time.Millisecond)
	require.Eventually(t, func() bool { j := get(a.ID); return j.Status == job.Running && j.Owner == task3 }, 30*time.Second, 20*time.Millisecond)
	j = get(a.ID)
	require.Equal(t, 3, j.Attempt)
	require.Equal(t, failures, j.Failures)

	// GET /v1/fleet's view: both tasks stopped, classified from ECS's task
	// listing (stop code, stopped reason, the container's exit code and
	// reason).
	v, err := dispatcher.FleetStatus(ctx, fl, scaler)
	require.NoError(t, err)
	classes := map[string]fleet.StopClass{}
	for _, s := range v.RecentStops {
		classes[s.ID] = s.Class
	}
	require.Equal(t, fleet.StopOOM, classes[task1])
	require.Equal(t, fleet.StopSpot, classes[task2])
	// task3 is active (the scaler may have started another for the job's
	// second message, which stays visible while task3 runs the job).
	var active []string
	for _, w := range v.Active {
		active = append(active, w.ID)
	}
	require.Contains(t, active, task3)
	require.Empty(t, v.Scaler.WaitingFor, "provisioning works")
}

// noCapacity answers RunTask with Fargate's capacity failure (in
// failures[], not as an error) the first left times, and records the last
// RunTask input that launched.
type noCapacity struct {
	ecsfleet.API
	mu   sync.Mutex
	left int32
	last *ecs.RunTaskInput
}

func (n *noCapacity) RunTask(ctx context.Context, in *ecs.RunTaskInput, optFns ...func(*ecs.Options)) (*ecs.RunTaskOutput, error) {
	n.mu.Lock()
	if n.left > 0 {
		n.left--
		n.mu.Unlock()
		return &ecs.RunTaskOutput{Failures: []ecstypes.Failure{{
			Arn:    in.TaskDefinition,
			Reason: aws.String("Capacity is unavailable at this time. Please try again later or in a different availability zone"),
		}}}, nil
	}
	n.last = in
	n.mu.Unlock()
	return n.API.RunTask(ctx, in, optFns...)
}

func (n *noCapacity) remaining() int32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.left
}

func (n *noCapacity) launched() *ecs.RunTaskInput {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.last
}

// getenv reads the options as configuration variables.
func (o options) getenv(name string) string { return o[name] }
