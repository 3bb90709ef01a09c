package ecsfleet

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBucket(t *testing.T) {
	t.Parallel()
	now := epoch
	b := newBucket(Rate{PerSecond: 20, Burst: 100}, now)
	require.Equal(t, 100, b.take(now, 150), "starts full; takes at most what it holds")
	require.Equal(t, 0, b.take(now, 1))

	now = now.Add(49 * time.Millisecond) // 0.98 of a token
	require.Equal(t, 0, b.take(now, 1))
	now = now.Add(time.Millisecond) // 1 token
	require.Equal(t, 1, b.take(now, 10))

	now = now.Add(time.Second) // 20 tokens
	require.Equal(t, 7, b.take(now, 7))
	b.refund(7)
	require.Equal(t, 20, b.take(now, 100))

	// A clock that goes back neither adds nor removes tokens.
	b.refund(3)
	require.Equal(t, 3, b.take(now.Add(-time.Hour), 10))

	// Refunds and long pauses stop at the burst.
	b.refund(1000)
	require.Equal(t, 100, b.take(now, 1000))
	now = now.Add(24 * time.Hour)
	require.Equal(t, 100, b.take(now, 1000))
	require.Equal(t, 0, b.take(now, 0))
}

func TestFamily(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"worker":   "worker",
		"worker:7": "worker",
		"arn:aws:ecs:us-east-1:123456789012:task-definition/worker:7": "worker",
		"arn:aws-cn:ecs:cn-north-1:123456789012:task-definition/w-1":  "w-1",
		"arn:aws:ecs:us-east-1:123456789012:task-definition/":         "",
	} {
		require.Equal(t, want, Family(in), "Family(%q)", in)
	}
}

func TestFailureRetryable(t *testing.T) {
	t.Parallel()
	for reason, want := range map[string]bool{
		"RESOURCE:ENI":    true,
		"RESOURCE:MEMORY": true,
		"AGENT":           true,
		"Capacity is unavailable at this time. Please try again later or in a different availability zone": true,
		"You've reached the limit on the number of tasks you can run concurrently":                         true,
		"Rate exceeded":                      true,
		"ATTRIBUTE":                          false,
		"MISSING":                            false,
		"INACTIVE":                           false,
		"LOCATION: The task is not in scope": false,
	} {
		require.Equal(t, want, failureRetryable(reason), "%q", reason)
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", truncate("abc", 255))
	require.Equal(t, strings.Repeat("a", 255), truncate(strings.Repeat("a", 300), 255))
	// "é" is 2 bytes: 255 bytes would split the 128th.
	require.Equal(t, strings.Repeat("é", 127), truncate(strings.Repeat("é", 200), 255))
}
