package worker

import "context"

// HeartbeatNow runs one heartbeat at once (tests drive heartbeats by hand).
func (w *Worker) HeartbeatNow(ctx context.Context) { w.heartbeat(ctx) }
