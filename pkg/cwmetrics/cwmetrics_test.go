package cwmetrics_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/cwmetrics"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestSampleIsZeroSafe(t *testing.T) {
	t.Parallel()
	require.Equal(t, 7.0, cwmetrics.Sample{Backlog: 7}.BacklogPerWorker())
	require.Equal(t, 2.5, cwmetrics.Sample{Backlog: 10, Active: 4}.BacklogPerWorker())
	require.Zero(t, cwmetrics.Sample{}.BacklogPerWorker())
}

// The publisher's requests reach a CloudWatch endpoint (moto) through the
// awsQuery protocol, and the statistics come back.
func TestPublishReachesCloudWatch(t *testing.T) {
	t.Parallel()
	c := cwmetrics.NewClient(awstest.Config(t))
	dep := awstest.Name(t)
	p := cwmetrics.New(c, dep, time.Hour, nil)
	ctx := context.Background()
	require.NoError(t, p.Flush(ctx), "nothing observed: nothing sent")
	p.Observe(cwmetrics.Sample{Backlog: 10, Active: 2, Desired: 3})
	p.Observe(cwmetrics.Sample{Backlog: 30, Active: 3, Desired: 8})
	require.NoError(t, p.Flush(ctx))

	end := time.Now().Add(time.Minute)
	out, err := c.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(end.Add(-10 * time.Minute)), EndTime: aws.Time(end),
		MetricDataQueries: []types.MetricDataQuery{{
			Id: aws.String("bpw"),
			MetricStat: &types.MetricStat{
				Metric: &types.Metric{Namespace: aws.String(cwmetrics.Namespace), MetricName: aws.String("BacklogPerWorker"),
					Dimensions: []types.Dimension{{Name: aws.String("Deployment"), Value: aws.String(dep)}}},
				Period: aws.Int32(60), Stat: aws.String("Maximum"),
			},
		}},
	})
	require.NoError(t, err)
	require.Len(t, out.MetricDataResults, 1)
	require.Equal(t, []float64{10}, out.MetricDataResults[0].Values, "max of 5 and 10")
}

type recorder struct{ calls int }

func (r *recorder) PutMetricData(context.Context, *cloudwatch.PutMetricDataInput, ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	r.calls++
	return &cloudwatch.PutMetricDataOutput{}, nil
}

func TestStopFlushesOnce(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	p := cwmetrics.New(r, "d", time.Hour, nil)
	p.Stop() // before Start: fine
	p = cwmetrics.New(r, "d", time.Hour, nil)
	p.Start(context.Background())
	p.Observe(cwmetrics.Sample{Backlog: 1})
	p.Stop()
	p.Stop()
	require.Equal(t, 1, r.calls)
}
