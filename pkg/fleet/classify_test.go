package fleet_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/fleet"
)

func exit(code int) *int { return &code }

func TestClassify(t *testing.T) {
	t.Parallel()
	const exited = "Essential container in task exited"
	for _, tc := range []struct {
		name  string
		event fleet.Event
		want  fleet.StopClass
	}{
		{"oom by container reason", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited, ExitCode: exit(137),
			ContainerReason: "OutOfMemoryError: Container killed due to memory usage"}, fleet.StopOOM},
		{"oom by task reason", fleet.Event{Reason: "OutOfMemoryError"}, fleet.StopOOM},
		{"oom as a word", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(1), ContainerReason: "oom-kill"}, fleet.StopOOM},
		{"oom inside a word is not", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(1), ContainerReason: "no room left on device"}, fleet.StopCrashed},
		{"oom by reason after a stop request", fleet.Event{StopCode: fleet.StopUserInitiated, ExitCode: exit(137),
			ContainerReason: "OutOfMemoryError: Container killed due to memory usage"}, fleet.StopOOM},
		{"oom by exit 137", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited, ExitCode: exit(137)}, fleet.StopOOM},
		{"exit 137 without a stop code is a crash", fleet.Event{ExitCode: exit(137), ContainerReason: "killed by signal 9 (killed)"}, fleet.StopCrashed},
		{"oom killed, docker's word", fleet.Event{StopCode: fleet.StopEssentialContainerExited, ExitCode: exit(137), ContainerReason: "OOMKilled"}, fleet.StopOOM},
		{"a user stop's free text is not an oom", fleet.Event{StopCode: fleet.StopUserInitiated, Reason: "OOM debugging", ExitCode: exit(0)}, fleet.StopScaleIn},
		{"infrastructure health", fleet.Event{StopCode: fleet.StopInfrastructureHealth, Reason: "Task is being retired", ExitCode: exit(137)}, fleet.StopInfrastructure},
		{"unknown stop code with 137", fleet.Event{StopCode: "SomethingNew", Reason: "Task is being retired", ExitCode: exit(137)}, fleet.StopUnknown},
		{"spot by stop code", fleet.Event{StopCode: fleet.StopSpotInterruption}, fleet.StopSpot},
		{"spot by termination notice", fleet.Event{StopCode: fleet.StopTerminationNotice}, fleet.StopSpot},
		{"spot by reason", fleet.Event{StopCode: fleet.StopUserInitiated, Reason: "Your Spot Task was interrupted."}, fleet.StopSpot},
		{"spot, killed after the stop timeout", fleet.Event{StopCode: fleet.StopSpotInterruption, Reason: "Your Spot Task was interrupted.",
			ExitCode: exit(137)}, fleet.StopSpot},
		{"failed to start", fleet.Event{StopCode: fleet.StopTaskFailedToStart,
			Reason: "CannotPullContainerError: pull image manifest has been retried 5 time(s)"}, fleet.StopFailedToStart},
		{"user stop", fleet.Event{StopCode: fleet.StopUserInitiated, Reason: "Task stopped by user", ExitCode: exit(143)}, fleet.StopScaleIn},
		{"service scheduler", fleet.Event{StopCode: fleet.StopServiceSchedulerInitiated, Reason: "Scaling activity initiated by deployment"}, fleet.StopScaleIn},
		{"user stop, killed after the stop timeout", fleet.Event{StopCode: fleet.StopUserInitiated, Reason: "Task stopped by user",
			ExitCode: exit(137)}, fleet.StopScaleIn},
		{"scheduler stop, killed after the stop timeout", fleet.Event{StopCode: fleet.StopServiceSchedulerInitiated,
			ExitCode: exit(137)}, fleet.StopScaleIn},
		{"exited 0", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited, ExitCode: exit(0)}, fleet.StopExited},
		{"crashed", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited, ExitCode: exit(1)}, fleet.StopCrashed},
		{"crashed by a signal", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited, ExitCode: exit(139)}, fleet.StopCrashed},
		{"crashed, no stop code", fleet.Event{ExitCode: exit(2)}, fleet.StopCrashed},
		{"essential container exited, no exit code", fleet.Event{StopCode: fleet.StopEssentialContainerExited, Reason: exited}, fleet.StopCrashed},
		{"unknown", fleet.Event{}, fleet.StopUnknown},
		{"unknown stop code", fleet.Event{StopCode: "SomethingNew", Reason: "who knows"}, fleet.StopUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := tc.event
			e.WorkerID, e.LastStatus, e.DesiredStatus = "task/1", fleet.StatusStopped, fleet.StatusStopped
			require.Equal(t, tc.want, fleet.Classify(e))
			// A stopping event (a notice ahead of the stop) classifies the same.
			e.LastStatus = fleet.StatusRunning
			require.Equal(t, tc.want, fleet.Classify(e))
		})
	}
}

// Stops that may be the job's doing spend an attempt; interruptions,
// requested stops and clean exits do not.
func TestStopClassBlamesJob(t *testing.T) {
	t.Parallel()
	for class, blames := range map[fleet.StopClass]bool{
		fleet.StopOOM:            true,
		fleet.StopCrashed:        true,
		fleet.StopUnknown:        true,
		fleet.StopSpot:           false,
		fleet.StopFailedToStart:  false,
		fleet.StopExited:         false,
		fleet.StopScaleIn:        false,
		fleet.StopInfrastructure: false,
	} {
		require.Equal(t, blames, class.BlamesJob(), "%s", class)
	}
}

// The event's exit code is the failing container's, not an init
// container's or a sidecar's 0, wherever it is in the list.
func TestParseEventPicksTheFailingContainer(t *testing.T) {
	t.Parallel()
	e, err := fleet.ParseEvent([]byte(`{"id":"e1","detail-type":"ECS Task State Change","source":"aws.ecs","time":"2026-11-27T10:00:00Z",
		"detail":{"taskArn":"arn:aws:ecs:us-east-1:1:task/c/t","lastStatus":"STOPPED","desiredStatus":"STOPPED","stopCode":"EssentialContainerExited",
		"stoppedReason":"Essential container in task exited","version":3,
		"containers":[{"name":"init","exitCode":0},{"name":"log"},{"name":"worker","exitCode":137,"reason":"OutOfMemoryError: Container killed due to memory usage"}]}}`))
	require.NoError(t, err)
	require.Equal(t, 137, *e.ExitCode)
	require.Contains(t, e.ContainerReason, "OutOfMemoryError")
	require.Equal(t, fleet.StopOOM, fleet.Classify(e))
}
