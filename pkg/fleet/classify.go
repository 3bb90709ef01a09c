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
	StopOOM           StopClass = "oom"             // a container ran out of memory (or was SIGKILLed unasked: exit 137)
	StopSpot          StopClass = "spot"            // Fargate Spot interruption / termination notice
	StopFailedToStart StopClass = "failed_to_start" // never ran (image pull, ENI, capacity)
	StopCrashed       StopClass = "crashed"         // essential container exited non-zero (other than 137)
	StopExited        StopClass = "exited"          // exited 0 by itself (idle scale-in)
	StopScaleIn       StopClass = "scale_in"        // stopped on request (StopTask, service scheduler)
	StopUnknown       StopClass = "unknown"
)

// Classify says why the worker of a STOPPED (or stopping) event stopped.
//
// An essential container that exited with 137 (killed by SIGKILL) counts
// as out of memory even when no reason says so: on Fargate, where nothing
// else signals a container that was not told to stop, that is almost always
// the kernel's OOM killer (a local worker killed with kill -9 counts so
// too). After a stop request or a Spot interruption, 137 is the SIGKILL
// that follows the stop timeout, and the stop code decides.
func Classify(e Event) StopClass {
	reason := strings.ToLower(e.Reason + " " + e.ContainerReason)
	killed := e.ExitCode != nil && *e.ExitCode == 137
	switch {
	case strings.Contains(reason, "outofmemory") || hasWord(reason, "oom") || (killed && strings.Contains(reason, "memory")):
		return StopOOM
	case e.StopCode == StopSpotInterruption || e.StopCode == StopTerminationNotice || strings.Contains(reason, "spot task was interrupted"):
		return StopSpot
	case e.StopCode == StopTaskFailedToStart:
		return StopFailedToStart
	case e.StopCode == StopUserInitiated || e.StopCode == StopServiceSchedulerInitiated:
		return StopScaleIn
	case killed:
		return StopOOM
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

// hasWord reports whether s holds w as a whole word ("oom" in "OOM killed"
// or "oom-kill", not in "room").
func hasWord(s, w string) bool {
	return slices.Contains(strings.FieldsFunc(s, func(r rune) bool { return !unicode.IsLetter(r) }), w)
}
