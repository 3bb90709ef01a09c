package startstop_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/internal/startstop"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGroup(t *testing.T) {
	var g startstop.Group
	var running, ended atomic.Int32
	loop := func(ctx context.Context) {
		running.Add(1)
		<-ctx.Done()
		ended.Add(1)
	}
	require.NoError(t, g.Start(context.Background(), "thing", loop, loop))
	require.ErrorIs(t, g.Start(context.Background(), "thing", loop), errcode.FailedPrecondition)
	require.True(t, g.Stop())
	require.False(t, g.Stop(), "a second Stop does nothing")
	require.Equal(t, int32(2), ended.Load(), "Stop waits for every loop")

	var never startstop.Group
	require.True(t, never.Stop(), "Stop before Start is fine")
	require.Error(t, never.Start(context.Background(), "thing", loop), "no Start after Stop")
	require.Equal(t, int32(2), running.Load())
}
