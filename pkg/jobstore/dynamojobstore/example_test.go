package dynamojobstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
)

// A bootstrap step creates the table once (or infrastructure code mirrors
// CreateTableInput); services open it.
func ExampleOpen() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx) // AWS_ENDPOINT_URL points it at LocalStack or moto
	if err != nil {
		log.Fatal(err)
	}
	client := dynamodb.NewFromConfig(cfg)
	if err := dynamojobstore.CreateTable(ctx, client, dynamojobstore.DefaultTable, nil); err != nil {
		log.Fatal(err)
	}
	store, err := dynamojobstore.Open(ctx, client, dynamojobstore.DefaultTable, nil)
	if err != nil {
		log.Fatal(err) // errcode.NotFound when the table does not exist
	}
	defer store.Close()

	now := time.Now()
	j := job.DefaultPolicy.New(&job.Submission{Type: "resize", Key: "img-1"}, job.DefaultLimits, job.NewID(now), now)
	res, err := store.Create(ctx, j)
	if err != nil {
		log.Fatal(err)
	}
	if errors.Is(res[0].Err, errcode.AlreadyExists) {
		fmt.Println("deduplicated: job", res[0].Holder, "holds the key")
	}
}
