// Package cwmetrics publishes the scaler's numbers to CloudWatch, for
// users who scale with ECS service auto scaling (target tracking on
// BacklogPerWorker) or alarm in CloudWatch instead of Prometheus.
//
// The scaler observes every second; Publisher aggregates the observations
// and sends one PutMetricData per Interval (default 1 minute, CloudWatch's
// standard resolution) as statistic sets (min, max, sum, count), so the
// cost stays at about 44,000 requests a month per dispatcher.
//
// Metrics, in namespace "jobfleet" with dimension Deployment = the
// resource prefix: BacklogPerWorker (visible + in-flight work messages per
// active worker; the backlog itself when no worker runs, so it is never a
// division by zero and always says "scale out" when there is work),
// Backlog, ActiveWorkers, DesiredWorkers.
//
// aws-sdk-go-v2's CloudWatch client speaks Smithy RPC v2 CBOR by default;
// NewClient selects the awsQuery protocol, which CloudWatch also serves and
// which LocalStack and moto understand.
package cwmetrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/schemas"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsquery"
)

// Namespace is the CloudWatch namespace of jobfleet's metrics.
const Namespace = "jobfleet"

// API is the CloudWatch call Publisher uses.
type API interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, opts ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// NewClient returns a CloudWatch client for cfg that speaks awsQuery.
func NewClient(cfg aws.Config) *cloudwatch.Client {
	return cloudwatch.NewFromConfig(cfg, func(o *cloudwatch.Options) {
		o.Protocol = awsquery.New(schemas.GraniteServiceVersion20100801)
	})
}

// Sample is one observation of the scaler.
type Sample struct {
	Backlog, Active, Desired int
}

// BacklogPerWorker is the zero-safe ratio the scaler and CloudWatch use.
func (s Sample) BacklogPerWorker() float64 {
	return float64(s.Backlog) / float64(max(s.Active, 1))
}

type stat struct{ min, max, sum, n float64 }

func (s *stat) add(v float64) {
	if s.n == 0 || v < s.min {
		s.min = v
	}
	if s.n == 0 || v > s.max {
		s.max = v
	}
	s.sum += v
	s.n++
}

// Publisher aggregates samples and sends them every Interval.
type Publisher struct {
	api        API
	deployment string
	interval   time.Duration
	log        *slog.Logger

	mu    sync.Mutex
	stats map[string]*stat

	startOnce, stopOnce sync.Once
	cancel              context.CancelFunc
	done                chan struct{}
}

// New returns a publisher for the deployment (the resource prefix). A zero
// interval means one minute.
func New(api API, deployment string, interval time.Duration, log *slog.Logger) *Publisher {
	if interval <= 0 {
		interval = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Publisher{api: api, deployment: deployment, interval: interval, log: log, stats: map[string]*stat{}, done: make(chan struct{})}
}

// Observe records a sample. It never blocks on the network.
func (p *Publisher) Observe(s Sample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, v := range map[string]float64{
		"BacklogPerWorker": s.BacklogPerWorker(),
		"Backlog":          float64(s.Backlog),
		"ActiveWorkers":    float64(s.Active),
		"DesiredWorkers":   float64(s.Desired),
	} {
		st := p.stats[name]
		if st == nil {
			st = &stat{}
			p.stats[name] = st
		}
		st.add(v)
	}
}

// Flush sends what was observed since the last flush (nothing if nothing
// was).
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	stats := p.stats
	p.stats = map[string]*stat{}
	p.mu.Unlock()
	if len(stats) == 0 {
		return nil
	}
	now := time.Now()
	var data []types.MetricDatum
	for name, st := range stats {
		data = append(data, types.MetricDatum{
			MetricName: aws.String(name),
			Dimensions: []types.Dimension{{Name: aws.String("Deployment"), Value: aws.String(p.deployment)}},
			Timestamp:  aws.Time(now),
			StatisticValues: &types.StatisticSet{
				Minimum: aws.Float64(st.min), Maximum: aws.Float64(st.max),
				Sum: aws.Float64(st.sum), SampleCount: aws.Float64(st.n),
			},
			Unit: types.StandardUnitCount,
		})
	}
	if _, err := p.api.PutMetricData(ctx, &cloudwatch.PutMetricDataInput{Namespace: aws.String(Namespace), MetricData: data}); err != nil {
		return fmt.Errorf("publish scaler metrics to CloudWatch: %w", err)
	}
	return nil
}

// Start flushes every interval until Stop or ctx ends; Stop flushes once
// more.
func (p *Publisher) Start(ctx context.Context) {
	p.startOnce.Do(func() {
		ctx, p.cancel = context.WithCancel(ctx)
		go func() {
			defer close(p.done)
			t := time.NewTicker(p.interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
					if err := p.Flush(fctx); err != nil {
						p.log.Warn("cloudwatch", "err", err)
					}
					cancel()
					return
				case <-t.C:
					if err := p.Flush(ctx); err != nil {
						p.log.Warn("cloudwatch", "err", err)
					}
				}
			}
		}()
	})
}

// Stop stops the loop after a last flush. Safe twice and before Start.
func (p *Publisher) Stop() {
	p.stopOnce.Do(func() {
		started := true
		p.startOnce.Do(func() { started = false })
		if !started {
			return
		}
		p.cancel()
		<-p.done
	})
}
