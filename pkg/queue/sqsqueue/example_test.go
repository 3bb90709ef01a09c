package sqsqueue_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqsqueue"
)

// Example sets up a work queue with a dead-letter queue and uses it. It
// needs AWS credentials and a region (or AWS_ENDPOINT_URL pointing at
// LocalStack or moto), so it is compiled but not run.
func Example() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx) // services use awsconfig.Load
	if err != nil {
		log.Fatal(err)
	}
	// The SDK's default HTTP client has no overall timeout, which long
	// polling needs (see the package doc).
	client := sqs.NewFromConfig(cfg)

	if _, err := sqsqueue.CreateQueue(ctx, client, "work-dlq", sqsqueue.Config{}); err != nil {
		log.Fatal(err)
	}
	if _, err := sqsqueue.CreateQueue(ctx, client, "work", sqsqueue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5}); err != nil {
		log.Fatal(err)
	}
	work, err := sqsqueue.Open(ctx, client, "work", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer work.Close()

	if _, err := work.Send(ctx, queue.SendEntry{Body: []byte(`{"id":"01J0","attempt":1}`)}); err != nil {
		log.Fatal(err)
	}
	msgs, err := work.Receive(ctx, queue.ReceiveOptions{Max: 10, Wait: 20 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("%s (receive %d)\n", m.Body, m.ReceiveCount)
		errs, err := work.Delete(ctx, m.Handle)
		if err != nil {
			log.Fatal(err)
		}
		if errs[0] != nil {
			log.Print(errs[0]) // a batch call succeeds while entries fail
		}
	}
}
