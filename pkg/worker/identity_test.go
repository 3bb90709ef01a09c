package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/worker"
)

func TestIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

	id, err := worker.Identity(ctx, env(map[string]string{"JOBFLEET_WORKER_ID": "w-7"}))
	require.NoError(t, err)
	require.Equal(t, "w-7", id, "an explicit identity wins")

	host, _ := os.Hostname()
	id, err = worker.Identity(ctx, env(nil))
	require.NoError(t, err)
	require.Equal(t, host+"/"+strconv.Itoa(os.Getpid()), id, "host/pid locally, as the local fleet names its workers")

	// On ECS: the task ARN from the task metadata endpoint v4.
	const arn = "arn:aws:ecs:us-east-1:123456789012:task/jobfleet/0123456789abcdef"
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v4/abc/task" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"Cluster":"jobfleet","TaskARN":"` + arn + `","Family":"jobfleet-worker"}`))
	}))
	defer meta.Close()
	id, err = worker.Identity(ctx, env(map[string]string{"ECS_CONTAINER_METADATA_URI_V4": meta.URL + "/v4/abc"}))
	require.NoError(t, err)
	require.Equal(t, arn, id)

	_, err = worker.Identity(ctx, env(map[string]string{"ECS_CONTAINER_METADATA_URI_V4": meta.URL + "/v4/other"}))
	require.ErrorContains(t, err, "task metadata", "no silent fallback: a worker that cannot name itself on ECS says so")
}
