package worker

import (
	"context"
	"time"
)

// HeartbeatNow runs one heartbeat at once (tests drive heartbeats by hand).
func (w *Worker) HeartbeatNow(ctx context.Context) { w.heartbeat(ctx) }

// OnFreeMemory replaces what an idle worker calls to return memory to the
// OS (Options.FreeMemoryWhenIdle); call it before Start.
func (w *Worker) OnFreeMemory(f func()) { w.freeMemory = f }

// OnIdleCheck shortens the idle check's period to every and calls f after
// each check begins; call it before Start.
func (w *Worker) OnIdleCheck(every time.Duration, f func()) { w.idleEvery, w.idleTicked = every, f }
