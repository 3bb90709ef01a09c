//go:build linux

package procfleet

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/fleet"
	"github.com/jobfleet/jobfleet/pkg/internal/sqlitedb"
)

func openRegistry(t *testing.T) *registry {
	t.Helper()
	db, err := sqlitedb.Open(t.Context(), filepath.Join(t.TempDir(), "fleet.db"), schema)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &registry{db: db}
}

func TestReusedPIDContinuesVersions(t *testing.T) {
	t.Parallel()
	g := openRegistry(t)
	ctx := t.Context()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	r := row{ID: "h/42", Cluster: "c", Host: "h", PID: 42, ProcStart: 100, LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning, CreatedAt: now, StartedAt: now}
	rows, err := g.insertRunning(ctx, r, now)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, int64(1), rows[0].Version)

	// Pid 42 again, a later process: the old row was never marked stopped.
	r2 := r
	r2.ProcStart = 200
	rows, err = g.insertRunning(ctx, r2, now.Add(time.Minute))
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, fleet.StatusStopped, rows[0].LastStatus)
	require.Equal(t, reasonGone, rows[0].Reason)
	require.Equal(t, uint64(100), rows[0].ProcStart)
	require.Equal(t, int64(2), rows[0].Version)
	require.Equal(t, fleet.StatusRunning, rows[1].LastStatus)
	require.Equal(t, int64(3), rows[1].Version)

	// The old process's exit, noticed late, does not touch the new row.
	_, ok, err := g.markStopped(ctx, "h/42", 100, exit{stopCode: fleet.StopEssentialContainerExited}, now)
	require.NoError(t, err)
	require.False(t, ok)
	got, found, err := g.get(ctx, "h/42")
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, fleet.StatusRunning, got.LastStatus)

	// Once stopped, a third process with the pid continues from there.
	_, ok, err = g.markStopped(ctx, "h/42", 200, exit{stopCode: fleet.StopEssentialContainerExited}, now)
	require.NoError(t, err)
	require.True(t, ok)
	r3 := r
	r3.ProcStart = 300
	rows, err = g.insertRunning(ctx, r3, now)
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, int64(5), rows[0].Version)
}

func TestMarkStoppedOnce(t *testing.T) {
	t.Parallel()
	g := openRegistry(t)
	ctx := t.Context()
	now := time.Now().UTC()
	_, err := g.insertRunning(ctx, row{ID: "h/7", Cluster: "c", Host: "h", PID: 7, ProcStart: 1, LastStatus: fleet.StatusRunning, DesiredStatus: fleet.StatusRunning}, now)
	require.NoError(t, err)
	s, ok, err := g.markStopping(ctx, "h/7", "why", now)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, fleet.StopUserInitiated, s.StopCode)
	_, ok, err = g.markStopping(ctx, "h/7", "again", now)
	require.NoError(t, err)
	require.False(t, ok, "a second Stop changes nothing")

	code := 0
	x := exit{code: &code, stopCode: fleet.StopEssentialContainerExited, reason: reasonExited}
	r, ok, err := g.markStopped(ctx, "h/7", 1, x, now)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "why", r.Reason, "the Stop's reason stays")
	require.Equal(t, fleet.StopUserInitiated, r.StopCode, "the Stop's code stays")
	require.Equal(t, 0, *r.ExitCode)
	require.Equal(t, r.Version, r.Published, "the writer claimed the event")
	_, ok, err = g.markStopped(ctx, "h/7", 1, x, now)
	require.NoError(t, err)
	require.False(t, ok)

	// Claims: a failed send gives it back, one claimer wins it again.
	require.NoError(t, g.unclaim(ctx, r))
	ok, err = g.claim(ctx, r)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = g.claim(ctx, r)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestAliveGuardsPIDReuse(t *testing.T) {
	t.Parallel()
	d := &driver{boot: bootID()}
	pid := os.Getpid()
	start, state, err := procInfo(pid)
	require.NoError(t, err)
	require.NotZero(t, start)
	require.NotEqual(t, byte('Z'), state)
	require.True(t, d.alive(pid, start, d.boot))
	require.False(t, d.alive(pid, start+1, d.boot), "same pid, another start time: another process")
	require.False(t, d.alive(pid, start, "another-boot"))
	require.False(t, d.alive(0, 0, ""))
	require.False(t, d.alive(4194305, 0, ""), "no such pid")
}
