package fleet

import "strings"

// StopClass is why a worker stopped, as the reaper counts it.
type StopClass string

// Stop classes.
const (
	StopOOM           StopClass = "oom"             // a container ran out of memory
	StopSpot          StopClass = "spot"            // Fargate Spot interruption / termination notice
	StopFailedToStart StopClass = "failed_to_start" // never ran (image pull, ENI, capacity)
	StopCrashed       StopClass = "crashed"         // essential container exited non-zero or was killed
	StopExited        StopClass = "exited"          // exited 0 by itself (idle scale-in)
	StopScaleIn       StopClass = "scale_in"        // stopped on request (StopTask, service scheduler)
	StopUnknown       StopClass = "unknown"
)

// Classify says why the worker of a STOPPED (or stopping) event stopped.
func Classify(e Event) StopClass {
	reason := strings.ToLower(e.Reason + " " + e.ContainerReason)
	switch {
	case strings.Contains(reason, "outofmemory") || strings.Contains(reason, "oom") || (e.ExitCode != nil && *e.ExitCode == 137 && strings.Contains(reason, "memory")):
		return StopOOM
	case e.StopCode == StopSpotInterruption || e.StopCode == StopTerminationNotice || strings.Contains(reason, "spot task was interrupted"):
		return StopSpot
	case e.StopCode == StopTaskFailedToStart:
		return StopFailedToStart
	case e.StopCode == StopUserInitiated || e.StopCode == StopServiceSchedulerInitiated:
		return StopScaleIn
	case e.StopCode == StopEssentialContainerExited || e.ExitCode != nil:
		if e.ExitCode != nil && *e.ExitCode == 0 {
			return StopExited
		}
		return StopCrashed
	}
	return StopUnknown
}

// BlamesJob reports whether jobs cut off by a stop of this class should
// spend an attempt: the worker crashed or ran out of memory, possibly
// because of the job. Interruptions and scale-in are not the job's doing.
func (c StopClass) BlamesJob() bool {
	switch c {
	case StopOOM, StopCrashed, StopUnknown:
		return true
	}
	return false
}
