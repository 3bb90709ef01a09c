package worker

import "context"

// HeartbeatNow runs one heartbeat at once (tests drive heartbeats by hand).
func (w *Worker) HeartbeatNow(ctx context.Context) { w.heartbeat(ctx) }

// OnFreeMemory replaces what an idle worker calls to return memory to the
// OS (Options.FreeMemoryWhenIdle); call it before Start.
func (w *Worker) OnFreeMemory(f func()) { w.freeMemory = f }
