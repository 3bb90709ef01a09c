package awstest_test

import (
	"context"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }

func TestEndpointServesSQS(t *testing.T) {
	t.Parallel()
	client := sqs.NewFromConfig(awstest.Config(t))
	name := awstest.Name(t)
	require.Regexp(t, `^t-testendpointservessqs-[0-9a-f]{8}$`, name)
	out, err := client.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	require.Contains(t, aws.ToString(out.QueueUrl), name)
}
