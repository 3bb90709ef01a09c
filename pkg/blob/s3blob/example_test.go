package s3blob_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
)

// Example stores and reads back a result. It needs AWS credentials and a
// region (or AWS_ENDPOINT_URL pointing at LocalStack or moto), so it is
// compiled but not run.
func Example() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx) // services use awsconfig.Load
	if err != nil {
		log.Fatal(err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		// LocalStack and moto need path-style addressing.
		o.UsePathStyle = os.Getenv("AWS_ENDPOINT_URL") != ""
	})
	if err := s3blob.CreateBucket(ctx, client, "jobfleet-artifacts"); err != nil {
		log.Fatal(err)
	}
	b, err := s3blob.Open(ctx, client, "jobfleet-artifacts", &s3blob.Options{Prefix: "prod/"})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// A reader of unknown size is streamed, in parts once it passes
	// PartSize.
	if _, err := b.Put(ctx, "results/01J0/output.json", strings.NewReader(`{"ok":true}`), &blob.PutOptions{ContentType: "application/json", Size: -1}); err != nil {
		log.Fatal(err)
	}
	data, err := b.ReadAll(ctx, "results/01J0/output.json")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(data))
}
