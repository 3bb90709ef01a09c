package bench

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

var (
	flagSize    = flag.String("size", "smoke", "smoke (tiny sizes, for make test) or full (make bench)")
	flagReport  = flag.String("report", "", "append the tables as a dated section to this Markdown file when every scenario passed")
	flagProfile = flag.String("drainprofile", "", "write a CPU profile of the profiled burn-down drain to this file")
)

// params are a run's sizes.
type params struct {
	full bool

	burnJobs    int
	burnBatch   int // jobs per Service.Submit call
	burnRepeats int // inserts measured per row
	burnConfigs []burnConfig

	rates        []int // jobs/s
	rateFor      time.Duration
	steadyWorker int
	steadyConc   int
	submitters   int

	costJobs    int
	costBatch   int
	costWorkers int
	costSample  int // meter the writes of one job in this many

	kills         int // per failover path
	warmupJobs    int // footprint
	footprintSpan time.Duration
	settle        time.Duration // footprint: idle before sampling
}

func sizes(t *testing.T) params {
	t.Helper()
	switch *flagSize {
	case "full":
		return params{
			full:     true,
			burnJobs: 4000, burnBatch: 1000, burnRepeats: 3,
			burnConfigs: []burnConfig{
				{workers: 1, conc: 4},
				{workers: 4, conc: 4, profiled: true},
				{workers: 4, conc: 4, shared: true},
				{workers: 1, conc: 16},
			},
			rates: []int{50, 200, 1000}, rateFor: 4 * time.Second,
			steadyWorker: 2, steadyConc: 4, submitters: 32,
			costJobs: 1000, costBatch: 100, costWorkers: 2, costSample: 10,
			kills: 20, warmupJobs: 200, footprintSpan: 2 * time.Second, settle: 3 * time.Second,
		}
	case "smoke":
		return params{
			burnJobs: 200, burnBatch: 100, burnRepeats: 1,
			burnConfigs: []burnConfig{{workers: 2, conc: 4, profiled: true}, {workers: 2, conc: 4, shared: true}},
			rates:       []int{50}, rateFor: time.Second,
			steadyWorker: 2, steadyConc: 4, submitters: 8,
			costJobs: 20, costBatch: 10, costWorkers: 1, costSample: 2,
			kills: 2, warmupJobs: 10, footprintSpan: 300 * time.Millisecond, settle: 100 * time.Millisecond,
		}
	}
	t.Fatalf("-size=%q: want smoke or full", *flagSize)
	return params{}
}

// parallel lets smoke runs overlap; full runs measure one scenario at a
// time.
func parallel(t *testing.T, p params) {
	if !p.full {
		t.Parallel()
	}
}

// TestMain gives the package a moto server (awstest), removes the binaries
// it built, checks that no goroutine was left behind, and writes the report.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	before := readMachine()
	code := awstest.Main(m)
	removeBinaries()
	if code == 0 {
		// Pooled HTTP connections (to moto, to the dispatchers) keep their
		// loops until they idle out; they are not leaks.
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	if code == 0 && *flagReport != "" {
		if err := writeReport(*flagReport, before, readMachine()); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
			code = 1
		}
	}
	return code
}
