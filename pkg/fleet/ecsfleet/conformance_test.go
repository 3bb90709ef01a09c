package ecsfleet_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet"
	"github.com/jobfleet/jobfleet/pkg/fleet/ecsfleet/ecsmoto"
	"github.com/jobfleet/jobfleet/pkg/fleet/fleettest"
)

// TestConformance runs the fleet suite on ECS: on moto unless
// AWS_ENDPOINT_URL names another endpoint. Each case gets its
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
			ecsmoto.Fix(o)
		}
	})
	subnets := ecsmoto.DefaultSubnets(t, ec2.NewFromConfig(cfg))
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		name := awstest.Name(t)
		taskDef := ecsmoto.CreateTaskFamily(t, client, name)
		var api ecsfleet.API = client
		if moto {
			api = ecsmoto.New(client)
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
