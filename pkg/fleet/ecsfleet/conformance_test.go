package ecsfleet_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/fleettest"
)

// TestConformance runs the fleet suite on ECS: on moto unless
// JOBFLEET_TEST_AWS_ENDPOINT names another endpoint. Each case gets its
// own cluster and task definition family, named from the test.
//
// ECS emits its task state change events through EventBridge, which moto
// does not do for ECS, so Harness.Events is nil; and nothing runs in a
// moto task, so it cannot crash (Harness.Crash is nil). The suite skips
// RunningEventAfterProvision, CrashReportsExitCode and EventVersionsGrow,
// and checks the rest through List.
func TestConformance(t *testing.T) {
	t.Parallel()
	cfg := awstest.Config(t)
	moto := awstest.IsMoto(t)
	client := ecs.NewFromConfig(cfg, func(o *ecs.Options) {
		if moto {
			withMotoNumericFix(o)
		}
	})
	subnets := defaultSubnets(t, ec2.NewFromConfig(cfg))
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		name := awstest.Name(t)
		taskDef := createTaskFamily(t, client, name)
		var api ecsfleet.API = client
		if moto {
			api = newMotoECS(client)
		}
		f, err := ecsfleet.Open(t.Context(), api, ecsfleet.Options{
			Cluster:        name,
			TaskDefinition: taskDef,
			Subnets:        subnets,
			ContainerName:  "worker",
			Env:            []string{"JOBFLEET_PROFILE=aws"},
			Tags:           map[string]string{"jobfleet-test": name},
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, f.Close()) })
		return fleettest.Harness{Fleet: f, Wait: 30 * time.Second}
	})
}

// defaultSubnets returns the default VPC's subnets (moto has them in every
// region; their VPC has DNS hostnames on, which moto's ECS needs).
func defaultSubnets(t *testing.T, c *ec2.Client) []string {
	t.Helper()
	out, err := c.DescribeSubnets(t.Context(), &ec2.DescribeSubnetsInput{
		Filters: []ec2types.Filter{{Name: aws.String("default-for-az"), Values: []string{"true"}}},
	})
	require.NoError(t, err)
	var ids []string
	for _, s := range out.Subnets {
		ids = append(ids, aws.ToString(s.SubnetId))
	}
	require.NotEmpty(t, ids, "no default subnets")
	if len(ids) > 2 {
		ids = ids[:2]
	}
	return ids
}

// createTaskFamily creates a cluster and a Fargate task definition, both
// named name, removed at cleanup, and returns the task definition's
// family:revision.
func createTaskFamily(t *testing.T, c *ecs.Client, name string) string {
	t.Helper()
	_, err := c.CreateCluster(t.Context(), &ecs.CreateClusterInput{ClusterName: aws.String(name)})
	require.NoError(t, err)
	td, err := c.RegisterTaskDefinition(t.Context(), &ecs.RegisterTaskDefinitionInput{
		Family:                  aws.String(name),
		RequiresCompatibilities: []types.Compatibility{types.CompatibilityFargate},
		NetworkMode:             types.NetworkModeAwsvpc,
		Cpu:                     aws.String("256"),
		Memory:                  aws.String("512"),
		ContainerDefinitions: []types.ContainerDefinition{{
			Name:      aws.String("worker"),
			Image:     aws.String("public.ecr.aws/docker/library/busybox:latest"),
			Essential: aws.Bool(true),
			Memory:    aws.Int32(512), // moto needs it on every container
			Command:   []string{"sleep", "3600"},
		}},
	})
	require.NoError(t, err)
	ref := aws.ToString(td.TaskDefinition.Family) + ":" + strconv.Itoa(int(td.TaskDefinition.Revision))
	t.Cleanup(func() {
		// t.Context has ended by now; the suite stopped its tasks.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := c.DeregisterTaskDefinition(ctx, &ecs.DeregisterTaskDefinitionInput{TaskDefinition: aws.String(ref)})
		require.NoError(t, err)
		_, err = c.DeleteCluster(ctx, &ecs.DeleteClusterInput{Cluster: aws.String(name)})
		require.NoError(t, err)
	})
	return ref
}
