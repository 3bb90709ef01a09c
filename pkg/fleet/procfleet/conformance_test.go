package procfleet_test

import (
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/pkg/fleet/fleettest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	fleettest.Run(t, func(t *testing.T) fleettest.Harness {
		b := setup(t, nil)
		return fleettest.Harness{
			Fleet:  b.fleet,
			Events: b.events,
			Crash:  func(id string, code int) { b.crash(t, id, code) },
			Wait:   30 * time.Second,
		}
	})
}
