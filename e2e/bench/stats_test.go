package bench

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"
)

// dist is a sample of durations.
type dist []time.Duration

// pct returns the q-quantile (0 < q ≤ 1) by the nearest-rank method.
func (d dist) pct(q float64) time.Duration { return quantile(d, q) }

// quantile returns the q-quantile of s by the nearest-rank method (zero
// for an empty s).
func quantile[T cmp.Ordered](s []T, q float64) T {
	var zero T
	if len(s) == 0 {
		return zero
	}
	s = slices.Clone(s)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func (d dist) max() time.Duration {
	if len(d) == 0 {
		return 0
	}
	return slices.Max(d)
}

// ms formats a duration in milliseconds, with precision to suit its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 1000:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// mib formats kB (as /proc reports them) in MiB.
func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
