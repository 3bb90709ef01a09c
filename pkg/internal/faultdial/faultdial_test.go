package faultdial_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/internal/faultdial"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type faults struct{ A, B float64 }

type stats struct{ A, B int }

// wrapper embeds a Dial as faultjobstore and faultqueue do.
type wrapper struct {
	faultdial.Dial[faults, stats]
}

func newWrapper(f faults, seed uint64) *wrapper {
	w := &wrapper{}
	faultdial.Init(&w.Dial, &faultdial.Options[faults]{Faults: f, Rand: rand.New(rand.NewPCG(seed, 0))})
	return w
}

func TestControls(t *testing.T) {
	t.Parallel()
	w := newWrapper(faults{A: 0.5}, 1)
	require.Equal(t, faults{A: 0.5}, w.Faults())
	require.Equal(t, stats{}, w.Stats())
	w.SetFaults(faults{B: 1})
	require.Equal(t, faults{B: 1}, w.Faults())

	dr := faultdial.Lock(&w.Dial)
	require.Equal(t, faults{B: 1}, dr.Faults())
	require.True(t, dr.Hit(dr.Faults().B, &dr.Stats().B))
	require.True(t, dr.Hit(dr.Faults().B, &dr.Stats().B))
	dr.Unlock()
	require.Equal(t, stats{B: 2}, w.Stats())
	require.Equal(t, faults{B: 1}, w.Faults(), "drawing leaves the faults alone")
}

// Draws follow the source: a fault of probability p happens when the next
// Float64 is below p, and a fault that is off draws nothing.
func TestDrawsFollowTheSource(t *testing.T) {
	t.Parallel()
	const seed = 42
	w := newWrapper(faults{A: 0.3}, seed)
	ref := rand.New(rand.NewPCG(seed, 0))
	hits, misses := 0, 0
	for range 200 {
		dr := faultdial.Lock(&w.Dial)
		require.False(t, dr.Hit(0, &dr.Stats().B), "p = 0")
		require.False(t, dr.Chance(-1), "p < 0")
		want := ref.Float64() < 0.3
		got := dr.Hit(dr.Faults().A, &dr.Stats().A)
		require.Equal(t, want, got)
		require.Equal(t, ref.Int64N(1000), dr.Int64N(1000))
		dr.Unlock()
		if got {
			hits++
		} else {
			misses++
		}
	}
	require.Equal(t, stats{A: hits}, w.Stats(), "each hit counted once, nothing else")
	require.Positive(t, hits)
	require.Positive(t, misses)
}

func TestChanceDoesNotCount(t *testing.T) {
	t.Parallel()
	w := newWrapper(faults{}, 7)
	dr := faultdial.Lock(&w.Dial)
	require.True(t, dr.Chance(1))
	dr.Unlock()
	require.Equal(t, stats{}, w.Stats())
}

func TestInitDefaultsToARandomSource(t *testing.T) {
	t.Parallel()
	var w wrapper
	faultdial.Init(&w.Dial, &faultdial.Options[faults]{Faults: faults{A: 1}})
	dr := faultdial.Lock(&w.Dial)
	require.True(t, dr.Hit(dr.Faults().A, &dr.Stats().A))
	dr.Unlock()
	require.Equal(t, stats{A: 1}, w.Stats())
}

// Concurrent calls' draws are serialized: no count is lost, and the
// controls can be used meanwhile (run with -race).
func TestConcurrentDraws(t *testing.T) {
	t.Parallel()
	w := newWrapper(faults{A: 1}, 3)
	const callers, calls = 8, 50
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range calls {
				dr := faultdial.Lock(&w.Dial)
				dr.Hit(dr.Faults().A, &dr.Stats().A)
				dr.Unlock()
				_ = w.Stats()
				w.SetFaults(faults{A: 1})
			}
		})
	}
	wg.Wait()
	require.Equal(t, stats{A: callers * calls}, w.Stats())
}

func TestPass(t *testing.T) {
	t.Parallel()
	double := func(calls *[][]int) func([]int) ([]int, error) {
		return func(pass []int) ([]int, error) {
			*calls = append(*calls, pass)
			out := make([]int, len(pass))
			for i, e := range pass {
				out[i] = 2 * e
			}
			return out, nil
		}
	}
	for _, c := range []struct {
		name      string
		skip      []bool
		want      []int
		wantCalls [][]int
	}{
		{"nil skip passes all", nil, []int{2, 4, 6, 8}, [][]int{{1, 2, 3, 4}}},
		{"none skipped", []bool{false, false, false, false}, []int{2, 4, 6, 8}, [][]int{{1, 2, 3, 4}}},
		{"some skipped", []bool{true, false, true, false}, []int{0, 4, 0, 8}, [][]int{{2, 4}}},
		{"all skipped: no call", []bool{true, true, true, true}, []int{0, 0, 0, 0}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var calls [][]int
			got, err := faultdial.Pass([]int{1, 2, 3, 4}, c.skip, double(&calls))
			require.NoError(t, err)
			require.Equal(t, c.want, got)
			require.Equal(t, c.wantCalls, calls)
		})
	}

	boom := errors.New("boom")
	got, err := faultdial.Pass([]int{1, 2}, []bool{true, false}, func([]int) ([]int, error) { return nil, boom })
	require.ErrorIs(t, err, boom)
	require.Nil(t, got)
}
