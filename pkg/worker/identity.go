package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet"
)

// Identity returns the worker's identity, the owner it writes into jobs:
// JOBFLEET_WORKER_ID when set; on ECS the task ARN from the task metadata
// endpoint (ECS_CONTAINER_METADATA_URI_V4), so the reaper can match ECS task
// state change events to the jobs of a stopped task; otherwise "host/pid",
// which is also how the local fleet names its worker processes.
func Identity(ctx context.Context, getenv func(string) string) (string, error) {
	if id := getenv("JOBFLEET_WORKER_ID"); id != "" {
		return id, nil
	}
	if uri := getenv("ECS_CONTAINER_METADATA_URI_V4"); uri != "" {
		return taskARN(ctx, uri)
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("worker identity: %w", err)
	}
	return fleet.LocalID(host, os.Getpid()), nil
}

// taskARN reads the task ARN from the ECS task metadata endpoint v4.
func taskARN(ctx context.Context, uri string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri+"/task", nil)
	if err != nil {
		return "", fmt.Errorf("worker identity: task metadata: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("worker identity: task metadata: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("worker identity: task metadata: %s", resp.Status)
	}
	var meta struct {
		TaskARN string `json:"TaskARN"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&meta); err != nil {
		return "", fmt.Errorf("worker identity: task metadata: %w", err)
	}
	if meta.TaskARN == "" {
		return "", fmt.Errorf("worker identity: task metadata has no TaskARN")
	}
	return meta.TaskARN, nil
}
