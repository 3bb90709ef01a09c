package ecsfleet

import "time"

// Rate is a token bucket's shape: it holds at most Burst tokens and gains
// PerSecond tokens a second. The zero Rate takes the default of the option
// it sets.
type Rate struct {
	PerSecond float64
	Burst     int
}

// bucket is a token bucket that refills from the times it is given, so it
// follows an injected clock. It starts full. It is not safe for concurrent
// use; the driver calls it under its provisioning lock.
type bucket struct {
	rate   float64 // tokens a second
	burst  float64
	tokens float64
	last   time.Time // when tokens was computed
}

func newBucket(r Rate, now time.Time) *bucket {
	return &bucket{rate: r.PerSecond, burst: float64(r.Burst), tokens: float64(r.Burst), last: now}
}

// refill adds what accrued since the last call. A clock that moves back
// adds nothing (and does not take anything away).
func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
		b.last = now
	}
}

// take removes up to want whole tokens and returns how many it removed.
func (b *bucket) take(now time.Time, want int) int {
	b.refill(now)
	got := min(want, int(b.tokens))
	if got < 0 {
		got = 0
	}
	b.tokens -= float64(got)
	return got
}

// refund gives back n tokens taken for work that did not happen.
func (b *bucket) refund(n int) {
	b.tokens = min(b.burst, b.tokens+float64(n))
}
