package fleet

import (
	"slices"
	"strings"
	"unicode"
)

// StopClass is why a worker stopped, as the reaper counts it.
type StopClass string

// Stop classes.
const (
	StopOOM            StopClass = "oom"             // a container ran out of memory (or was SIGKILLed unasked: exit 137)
	StopSpot           StopClass = "spot"            // Fargate Spot interruption / termination notice
	StopFailedToStart  StopClass = "failed_to_start" // never ran (image pull, ENI, capacity)
	StopCrashed        StopClass = "crashed"         // essential container exited non-zero (other than 137)
	StopExited         StopClass = "exited"          // exited 0 by itself (idle scale-in)
	StopScaleIn        StopClass = "scale_in"        // stopped on request (StopTask, service scheduler)
	StopInfrastructure StopClass = "infrastructure"  // stopped by AWS for the host's health or retirement
	StopUnknown        StopClass = "unknown"
)

// Classify says why the worker of a STOPPED (or stopping) event stopped.
//
// ECS reports an OOM kill on the container ("OutOfMemoryError: Container
// killed due to memory usage"), so the container's reason is read for it
// whatever the stop code; the task's stopped reason only when the task
// stopped by itself (a StopTask reason is free text). An essential
// container that exited with 137 (SIGKILL) counts as out of memory too: on
// Fargate nothing else kills a container that was not told to stop (a
// local worker killed with kill -9 counts so too). After a stop request, a
// Spot interruption or an infrastructure stop, 137 is the SIGKILL that
// follows the stop timeout, and the stop code decides.
func Classify(e Event) StopClass {
	byItself := e.StopCode == StopEssentialContainerExited || e.StopCode == ""
	exit := func(code int) bool { return e.ExitCode != nil && *e.ExitCode == code }
	switch {
	case mentionsOOM(e.ContainerReason) || (byItself && mentionsOOM(e.Reason)):
		return StopOOM
	case e.StopCode == StopSpotInterruption || e.StopCode == StopTerminationNotice ||
		strings.Contains(strings.ToLower(e.Reason), "spot task was interrupted"):
		return StopSpot
	case e.StopCode == StopInfrastructureHealth:
		return StopInfrastructure
	case e.StopCode == StopTaskFailedToStart:
		return StopFailedToStart
	case e.StopCode == StopUserInitiated || e.StopCode == StopServiceSchedulerInitiated:
		return StopScaleIn
	case e.StopCode == StopEssentialContainerExited && exit(137):
		return StopOOM
	case byItself && exit(0):
		return StopExited
	case e.StopCode == StopEssentialContainerExited || (byItself && e.ExitCode != nil):
		return StopCrashed
	}
	return StopUnknown
}

// mentionsOOM reports whether a reason says out of memory: "OutOfMemory...",
// or a word starting with "oom" ("OOM", "oom-kill", "OOMKilled"), not one
// that merely holds it ("room").
func mentionsOOM(reason string) bool {
	r := strings.ToLower(reason)
	return strings.Contains(r, "outofmemory") || slices.ContainsFunc(
		strings.FieldsFunc(r, func(c rune) bool { return !unicode.IsLetter(c) }),
		func(w string) bool { return strings.HasPrefix(w, "oom") })
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
