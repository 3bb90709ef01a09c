//go:build !jobfleet_noaws

package fleets

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ecs"

	"github.com/jobfleet/jobfleet/pkg/config"
	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
	"github.com/jobfleet/jobfleet/pkg/profile"
)

func openECS(ctx context.Context, cfg config.Config, b *profile.Backends) (*fleet.Fleet, error) {
	c := b.AWSClients()
	if c == nil {
		return nil, fmt.Errorf("the ECS fleet needs the aws profile")
	}
	f, err := ecsfleet.Open(ctx, ecs.NewFromConfig(c.Config), ECSOptions(cfg))
	if err != nil {
		return nil, err
	}
	b.Resources["fleet"] = fmt.Sprintf("ecs:%s/%s", cfg.ECSCluster, cfg.ECSTaskDefinition)
	return f, nil
}

// ECSOptions are the ECS fleet's options for cfg: its network, launch
// settings and the environment its workers need.
func ECSOptions(cfg config.Config) ecsfleet.Options {
	return ecsfleet.Options{
		Cluster:           cfg.ECSCluster,
		TaskDefinition:    cfg.ECSTaskDefinition,
		Subnets:           cfg.ECSSubnets,
		SecurityGroups:    cfg.ECSSecurityGroups,
		AssignPublicIP:    cfg.ECSAssignPublicIP,
		CapacityProviders: cfg.ECSCapacityProviders,
		ContainerName:     cfg.ECSContainer,
		Env:               workerEnv(cfg),
		Group:             "family:" + ecsfleet.Family(cfg.ECSTaskDefinition),
		Tags:              cfg.ECSTags,
	}
}

// workerEnv is what an ECS worker must agree on with the dispatcher: the
// profile, its resources and the protocol's durations. The task definition
// may set more (JOBFLEET_EXEC_ALLOW, JOBFLEET_CONCURRENCY, ...).
func workerEnv(cfg config.Config) []string {
	d := func(v time.Duration) string { return v.String() }
	return []string{
		"JOBFLEET_PROFILE=" + config.ProfileAWS,
		"JOBFLEET_RESOURCE_PREFIX=" + cfg.ResourcePrefix,
		"JOBFLEET_TABLE=" + cfg.Table,
		"JOBFLEET_WORK_QUEUE=" + cfg.WorkQueue,
		"JOBFLEET_WORK_DLQ=" + cfg.WorkDLQ,
		"JOBFLEET_INGRESS_QUEUE=" + cfg.IngressQueue,
		"JOBFLEET_INGRESS_DLQ=" + cfg.IngressDLQ,
		"JOBFLEET_EVENTS_QUEUE=" + cfg.EventsQueue,
		"JOBFLEET_EVENTS_DLQ=" + cfg.EventsDLQ,
		"JOBFLEET_BUCKET=" + cfg.Bucket,
		"JOBFLEET_BLOB_PREFIX=" + cfg.BlobPrefix,
		"JOBFLEET_FLEET=" + config.FleetECS,
		"JOBFLEET_HEARTBEAT=" + d(cfg.Heartbeat),
		"JOBFLEET_LEASE=" + d(cfg.Lease),
		"JOBFLEET_VISIBILITY=" + d(cfg.Visibility),
		"JOBFLEET_INLINE_LIMIT=" + fmt.Sprint(cfg.InlineLimit),
		"JOBFLEET_WORKER_ADDR=0.0.0.0:8081",
	}
}
