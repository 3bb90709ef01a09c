package bench

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awscfg "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awsconfig"
	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/handlers"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore/dynamometer"
	"github.com/jobfleet/jobfleet/pkg/metrics"
	"github.com/jobfleet/jobfleet/pkg/profile"
	"github.com/jobfleet/jobfleet/pkg/reaper"
	"github.com/jobfleet/jobfleet/pkg/worker"
)

// reaperSweep is the reaper's sweep interval while the cost run lasts.
const reaperSweep = 30 * time.Second

// The aws profile's SQS long-poll call lengths: the reaper's events queue,
// and a worker's work queue.
const (
	eventsPollWait = profile.OtherPollWait
	workPollWait   = profile.WorkPollWait
)

// List prices, us-east-1, in dollars per million.
const (
	priceSQS      = 0.40  // requests
	priceWrite    = 0.625 // DynamoDB on-demand write request units
	priceRead     = 0.125 // DynamoDB on-demand read request units
	priceS3Put    = 5.00  // PUT, COPY, POST, LIST
	priceS3Get    = 0.40  // GET and the rest
	serviceSQS    = "SQS"
	serviceDynamo = "DynamoDB"
	serviceS3     = "S3"
)

// awsRole is one service's view of the aws profile: its own SDK clients,
// counted in its own metrics, and its job store's client metered into st.
type awsRole struct {
	m *metrics.Metrics
	b *profile.Backends
}

func openAWSRole(t *testing.T, cfg config.Config, st *dynamometer.Meter, done *marks) *awsRole {
	t.Helper()
	ctx := t.Context()
	m := metrics.New()
	c := profile.NewClients(awstest.Config(t, awscfg.WithRetryMode(aws.RetryModeAdaptive),
		awscfg.WithAPIOptions([]func(*middleware.Stack) error{awsconfig.Instrument(m)})))
	b, err := profile.OpenAWSWith(ctx, cfg, c)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	meter := st.Client(c.DynamoDB, dynamodb.NewFromConfig(awstest.Config(t)), cfg.Table)
	d, err := dynamojobstore.OpenDriver(ctx, meter, cfg.Table, nil)
	require.NoError(t, err)
	var drv jobstore.Driver = d
	if done != nil {
		drv = finishRecorder{d, done}
	}
	require.NoError(t, b.Store.Close())
	b.Store = jobstore.New(drv, nil)
	t.Cleanup(func() { b.Store.Close() })
	return &awsRole{m: m, b: b}
}

// opKey is a service and operation.
type opKey struct{ service, op string }

// requests reads jobfleet_aws_requests_total by service and operation (all
// outcomes: AWS bills failed requests too).
func requests(t *testing.T, m *metrics.Metrics) map[opKey]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	out := map[opKey]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "jobfleet_aws_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var k opKey
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "service":
					k.service = l.GetValue()
				case "operation":
					k.op = l.GetValue()
				}
			}
			out[k] += mt.GetCounter().GetValue()
		}
	}
	return out
}

func sub(a, b map[opKey]float64) map[opKey]float64 {
	out := maps.Clone(a)
	for k, v := range b {
		out[k] -= v
		if out[k] == 0 {
			delete(out, k)
		}
	}
	return out
}

// usage is what a role used: requests and capacity units.
type usage struct {
	req          map[opKey]float64
	write, read  map[string]float64 // DynamoDB operation → units
	writeU, rdU  float64
	sqs, dyn, s3 float64 // requests
	s3put        float64
}

func measure(req map[opKey]float64, write, read map[string]float64) usage {
	u := usage{req: req, write: write, read: read}
	for _, v := range write {
		u.writeU += v
	}
	for _, v := range read {
		u.rdU += v
	}
	for k, v := range req {
		switch k.service {
		case serviceSQS:
			u.sqs += v
		case serviceDynamo:
			u.dyn += v
		case serviceS3:
			u.s3 += v
			switch k.op {
			case "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "ListObjectsV2":
				u.s3put += v
			}
		}
	}
	return u
}

// dollars is the list price of u.
func (u usage) dollars() float64 {
	return (u.sqs*priceSQS + u.writeU*priceWrite + u.rdU*priceRead + u.s3put*priceS3Put + (u.s3-u.s3put)*priceS3Get) / 1e6
}

// sweepPasses is how many passes the reaper made: the most observations of
// any sweep step's duration.
func sweepPasses(t *testing.T, m *metrics.Metrics) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	require.NoError(t, err)
	n := uint64(0)
	for _, mf := range mfs {
		if mf.GetName() == "jobfleet_sweep_seconds" {
			for _, mt := range mf.GetMetric() {
				n = max(n, mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return float64(n)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestCost(t *testing.T) {
	p := sizes(t)
	parallel(t, p)
	ctx := t.Context()
	// A short prefix keeps the bucket name (<prefix>-artifacts) valid. The
	// emulator is much slower than the service: a job waiting past its
	// resend deadline would be re-sent, an artifact of the emulator.
	cfg, err := config.Load(env{"JOBFLEET_PROFILE": config.ProfileAWS, "JOBFLEET_FLEET": config.FleetLocal,
		"JOBFLEET_RESOURCE_PREFIX": "bench-" + randomHex(4), "JOBFLEET_RESEND_AFTER": "1h"}.get)
	require.NoError(t, err)
	require.NoError(t, profile.BootstrapAWS(ctx, cfg, profile.NewClients(awstest.Config(t)), slog.New(slog.DiscardHandler)))

	done := newMarks()
	jobMeter, reaperMeter := dynamometer.New(p.costSample), dynamometer.New(1)
	disp := openAWSRole(t, cfg, jobMeter, nil)
	svc := newService(disp.b, cfg)
	reg := worker.NewRegistry()
	handlers.Register(reg, handlers.Options{})
	var workerRoles []*awsRole
	var workers []*worker.Worker
	for i := range p.costWorkers {
		r := openAWSRole(t, cfg, jobMeter, done)
		workerRoles = append(workerRoles, r)
		workers = append(workers, newWorker(t, r.b, fmt.Sprintf("bench/%d", i+1), reg, cfg, cfg.Concurrency))
	}
	// The reaper sweeps less often than its default while the emulator is
	// busy with the jobs; its cost is reported per pass and scaled to the
	// default.
	rr := openAWSRole(t, cfg, reaperMeter, nil)
	rp := reaper.New(rr.b.Store, rr.b.Work, &reaper.Options{Policy: cfg.Policy(), Sweep: reaperSweep,
		WorkDLQ: rr.b.WorkDLQ, Events: rr.b.Events, EventsDLQ: rr.b.EventsDLQ, Metrics: rr.m})
	t.Cleanup(rp.Stop)

	// Opening made calls (tables, queue URLs, the bucket): start counting now.
	roles := append([]*awsRole{disp, rr}, workerRoles...)
	base := map[*awsRole]map[opKey]float64{}
	for _, r := range roles {
		base[r] = requests(t, r.m)
	}
	jobMeter.Take()
	reaperMeter.Take()
	start := time.Now()
	require.NoError(t, rp.Start(ctx))
	for _, w := range workers {
		require.NoError(t, w.Start(ctx))
	}
	submitAll(t, svc, echoRequests(p.costJobs), p.costBatch)
	done.await(t, p.costJobs, 5*time.Minute)
	elapsed := time.Since(start)
	// Stopping waits for the last deletes (and each receive already sent).
	var wg sync.WaitGroup
	wg.Go(func() { stopAll(workers) })
	wg.Go(rp.Stop)
	wg.Wait()

	// The job path: the dispatcher and the workers together.
	jobReq := map[opKey]float64{}
	for _, r := range roles {
		if r == rr {
			continue
		}
		for k, v := range sub(requests(t, r.m), base[r]) {
			jobReq[k] += v
		}
	}
	jobU := jobMeter.Take()
	jobW, jobR, items := jobU.Write, jobU.Read, len(jobU.Items)
	require.Positive(t, items, "no job item was metered")
	n := float64(p.costJobs)
	// Write units were metered on a sample of the jobs: scale to all.
	for k := range jobW {
		jobW[k] *= n / float64(items)
	}
	reaperU := reaperMeter.Take()
	reaperUse := measure(sub(requests(t, rr.m), base[rr]), reaperU.Write, reaperU.Read)
	job := measure(jobReq, jobW, jobR)

	tb := newTable(3, fmt.Sprintf("3. Cost: %d no-op jobs, aws profile on moto", p.costJobs),
		"service", "operation", "requests", "per job", "capacity units per job")
	keys := slices.SortedFunc(maps.Keys(jobReq), func(a, b opKey) int {
		if a.service != b.service {
			return cmp.Compare(a.service, b.service)
		}
		return cmp.Compare(a.op, b.op)
	})
	for _, k := range keys {
		units := "–"
		if k.service == serviceDynamo {
			units = fmt.Sprintf("%.2f WU, %.2f RU", jobW[k.op]/n, jobR[k.op]/n)
		}
		tb.add(k.service, k.op, fmt.Sprintf("%.0f", jobReq[k]), fmt.Sprintf("%.3f", jobReq[k]/n), units)
	}
	tb.add("**total**", "", fmt.Sprintf("%.0f", job.sqs+job.dyn+job.s3),
		fmt.Sprintf("SQS %.3f, DynamoDB %.3f, S3 %.3f", job.sqs/n, job.dyn/n, job.s3/n),
		fmt.Sprintf("%.2f WU, %.2f RU", job.writeU/n, job.rdU/n))
	perMillion := job.dollars() / n * 1e6
	tb.note("**$ per million jobs: %.2f** — SQS %.2f (%.3f requests/job × $%.2f/M), DynamoDB writes %.2f (%.2f WU/job × $%.3f/M), reads %.2f (%.2f RU/job × $%.3f/M), S3 %.2f.",
		perMillion, job.sqs/n*priceSQS, job.sqs/n, priceSQS, job.writeU/n*priceWrite, job.writeU/n, priceWrite,
		job.rdU/n*priceRead, job.rdU/n, priceRead, (job.s3put*priceS3Put+(job.s3-job.s3put)*priceS3Get)/n)
	tb.note("The job path: dispatcher.Service.Submit in batches of %d and %d worker.Worker instances of concurrency %d, each role with its own SDK clients; "+
		"requests from jobfleet_aws_requests_total (every outcome), from the first submit until the workers had stopped (so a worker's empty long polls "+
		"while the run lasted are in). Write units metered on %d of the %d jobs (every write to them) from the items before and after each write, by DynamoDB's rules (see the package doc); "+
		"moto's own ConsumedCapacity leaves out the indexes. JOBFLEET_RESEND_AFTER=1h, so that the emulator's slowness (%s for the run) causes no resends.",
		p.costBatch, p.costWorkers, cfg.Concurrency, items, p.costJobs, elapsed.Round(time.Second))
	passes := sweepPasses(t, rr.m)
	require.Positive(t, passes, "the reaper never swept")
	perHour := 3600 / cfg.Sweep.Seconds()
	fixedDyn, fixedRU := reaperUse.dyn/passes*perHour, reaperUse.rdU/passes*perHour
	fixedSQS := perHour + 3600/eventsPollWait.Seconds()       // a DLQ receive per pass, events long polls
	fixedUSD := (fixedSQS*priceSQS + fixedRU*priceRead) / 1e6 // on-demand DynamoDB bills units, not requests
	tb.note("Fixed cost besides the jobs. The reaper (sweeping every %s here) made %s in %.0f sweep passes (%s), %.1f RU: per pass %.0f DynamoDB requests and %.1f RU, plus one work-DLQ receive; "+
		"and it long-polls the events queue (%s each). At the default sweep of %s that is about %.0f DynamoDB and %.0f SQS requests and %.0f RU an hour: $%.4f an hour, $%.2f a month. "+
		"An idle worker long-polls SQS: %.0f requests, $%.5f an hour.",
		reaperSweep, opSummary(reaperUse.req), passes, elapsed.Round(time.Millisecond), reaperUse.rdU, reaperUse.dyn/passes, reaperUse.rdU/passes,
		eventsPollWait, cfg.Sweep, fixedDyn, fixedSQS, fixedRU, fixedUSD, fixedUSD*730, 3600/workPollWait.Seconds(), 3600/workPollWait.Seconds()*priceSQS/1e6)
	publish(t, tb)

	require.Positive(t, job.sqs, "the job path made no SQS requests")
	require.Positive(t, job.writeU, "no write units were metered")
	addGoal(goal{rank: 3, what: "SQS requests per job", target: "≤ 1", measured: fmt.Sprintf("%.2f", job.sqs/n), met: job.sqs/n <= 1})
	addGoal(goal{rank: 3, what: "DynamoDB write units per job", target: "≤ 3", measured: fmt.Sprintf("%.2f", job.writeU/n), met: job.writeU/n <= 3})
}

// opSummary lists requests by operation, most first.
func opSummary(req map[opKey]float64) string {
	keys := slices.SortedFunc(maps.Keys(req), func(a, b opKey) int {
		if req[a] != req[b] {
			if req[a] > req[b] {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.op, b.op)
	})
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %.0f", k.op, req[k])
	}
	if s == "" {
		return "none"
	}
	return s
}
