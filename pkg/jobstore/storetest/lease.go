package storetest

import (
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// testLeases pins jobstore.Leaser for drivers that keep leases: one holder
// at a time, renewal by the holder, takeover after expiry, release, and one
// winner among racing claimants.
func testLeases(f *fx) {
	t, s, ctx := f.t, f.h.Store, f.ctx
	if _, ok := s.Driver().(jobstore.Leaser); !ok {
		_, err := s.AcquireLease(ctx, "scaler", "a", base, base.Add(time.Second))
		require.ErrorIs(t, err, errcode.FailedPrecondition)
		t.Skip("the driver keeps no leases")
	}
	now := base
	ok, err := s.AcquireLease(ctx, "scaler", "a", now, now.Add(10*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "a free lease is taken")
	ok, err = s.AcquireLease(ctx, "scaler", "b", now.Add(5*time.Second), now.Add(15*time.Second))
	require.NoError(t, err)
	require.False(t, ok, "held by another live holder")
	ok, err = s.AcquireLease(ctx, "other", "b", now, now.Add(time.Second))
	require.NoError(t, err)
	require.True(t, ok, "leases are independent by name")
	ok, err = s.AcquireLease(ctx, "scaler", "a", now.Add(5*time.Second), now.Add(20*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "the holder renews")
	ok, err = s.AcquireLease(ctx, "scaler", "b", now.Add(19*time.Second), now.Add(30*time.Second))
	require.NoError(t, err)
	require.False(t, ok, "the renewal moved the expiry")
	ok, err = s.AcquireLease(ctx, "scaler", "b", now.Add(20*time.Second), now.Add(30*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "an expired lease is taken over")
	ok, err = s.AcquireLease(ctx, "scaler", "a", now.Add(21*time.Second), now.Add(40*time.Second))
	require.NoError(t, err)
	require.False(t, ok, "the old holder lost it")

	require.NoError(t, s.ReleaseLease(ctx, "scaler", "a"), "releasing a lease one does not hold does nothing")
	ok, err = s.AcquireLease(ctx, "scaler", "c", now.Add(22*time.Second), now.Add(40*time.Second))
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.ReleaseLease(ctx, "scaler", "b"))
	ok, err = s.AcquireLease(ctx, "scaler", "c", now.Add(22*time.Second), now.Add(40*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "a released lease is free")

	_, err = s.AcquireLease(ctx, "", "c", now, now.Add(time.Second))
	require.ErrorIs(t, err, errcode.InvalidArgument)
	_, err = s.AcquireLease(ctx, "x", "c", now, now)
	require.ErrorIs(t, err, errcode.InvalidArgument)

	// Racing claimants of a free lease: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan string, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			holder := string(rune('a' + i))
			ok, err := s.AcquireLease(ctx, "race", holder, now, now.Add(time.Minute))
			require.NoError(t, err)
			if ok {
				wins <- holder
			}
		}()
	}
	wg.Wait()
	close(wins)
	var won []string
	for w := range wins {
		won = append(won, w)
	}
	require.Len(t, won, 1, "one winner: %v", won)
}
