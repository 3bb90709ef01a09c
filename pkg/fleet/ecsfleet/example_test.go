package ecsfleet_test

import (
	"context"
	"fmt"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
)

// Open a fleet of Fargate workers, preferring Spot, and start three.
// (Not run: it needs an AWS account or an emulator.)
func ExampleOpen() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx) // AWS_ENDPOINT_URL points it at moto or LocalStack
	if err != nil {
		log.Fatal(err)
	}
	f, err := ecsfleet.Open(ctx, ecs.NewFromConfig(cfg), ecsfleet.Options{
		Cluster:           "jobfleet",
		TaskDefinition:    "jobfleet-worker",
		Subnets:           []string{"subnet-0123456789abcdef0"},
		SecurityGroups:    []string{"sg-0123456789abcdef0"},
		CapacityProviders: []string{"FARGATE_SPOT:3", "FARGATE:1:1"},
		ContainerName:     "worker",
		Env:               []string{"JOBFLEET_PROFILE=aws"},
		Tags:              map[string]string{"app": "jobfleet"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	p, err := f.Provision(ctx, 3)
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range p.Workers {
		fmt.Println("started", w.ID, w.LastStatus)
	}
	for _, fail := range p.Failures {
		fmt.Printf("%d not started: %s (retry later: %v)\n", fail.Count, fail.Reason, fail.Retryable)
	}
}
