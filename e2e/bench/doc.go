// Package bench holds jobfleet's benchmark scenarios (`make bench`): each
// measures the running system, prints a table, and — with -report — appends
// the tables as a dated section (date, CPUs, memory, commit, load) to
// docs/benchmarks.md.
//
// The scenarios are tests, so that they share the e2e suite's ways of
// starting things (awstest's moto server, temporary data directories,
// cleanup) and so that `go test ./...` in the e2e module runs every scenario
// at a tiny size (-size=smoke, the default) under -race: the benchmarks
// cannot rot. `make bench` runs them at full size, without -race:
//
//	cd e2e && go test -count=1 -timeout 20m -v -run . ./bench \
//		-args -size=full -report=../docs/benchmarks.md -drainprofile=/tmp/drain.pprof
//
// Flags (after -args): -size=smoke|full; -report=FILE appends the tables to
// FILE when every scenario passed; -drainprofile=FILE writes a CPU profile
// of one burn-down drain (the configuration marked "profiled").
//
// # Scenarios
//
//  1. Burn-down (TestBurnDown): N no-op jobs (type echo, payload {"n":i})
//     submitted through dispatcher.Service.Submit in batches of 1000, then
//     drained by W worker.Worker instances of concurrency C (the stock
//     handlers). In-process, so that the CPU profile covers the cores and
//     adapters, but shaped like separate processes: each worker opens the
//     data directory through profile.Open as its own process would (its own
//     SQLite handles, so a send in one does not wake a receive in another,
//     and writers meet on the file lock), except in the row marked "one
//     process", where the W workers share one set of handles. The baseline
//     is the storage ceiling, measured in the same run on a fresh data
//     directory with the same schema: the same SQLite statements and
//     transactions, batched the same way (create 100 jobs a transaction,
//     send 10 messages a transaction, receive up to the free slots ≤ 10, one
//     start transaction per receive, one finish and one delete transaction
//     per job, W pollers with C slots each, writes serialized per handle as
//     the adapters do), with the records encoded once beforehand and no
//     protocol logic. Jobs/s is reported as a fraction of the ceiling's.
//     Inserts take about a second, so each is measured a few times,
//     alternating with the ceiling's, and the median reported. Variants of
//     the ceiling measure what a change would allow without making it:
//     finishes and deletes committed per receive batch (group commit),
//     synchronous=NORMAL, and receives without the dead-letter scan. Single
//     submits: the same N jobs, one per Submit call, from 32 concurrent
//     producers (closed loop), as an HTTP API under load sees them.
//  2. Steady state (TestSteadyState): the same in-process system with W warm
//     workers; single-job submits at fixed rates (open loop: each job is
//     submitted at its scheduled time by a pool of submitters, or as soon as
//     one is free). Per job: submit latency (call → return), dispatch→start
//     (Submit returned → the handler began) and submit→done (Submit called →
//     the SUCCEEDED write returned, recorded by a Driver wrapper around the
//     workers' job store).
//  3. Cost (TestCost): the aws profile on a moto server (awstest), 1,000
//     no-op jobs through the real cores (Service.Submit in batches of 100,
//     two workers of the default concurrency, a reaper), each role with its
//     own SDK clients instrumented by awsconfig.Instrument. Requests per job
//     come from jobfleet_aws_requests_total. DynamoDB capacity units are
//     metered by dynamojobstore/dynamometer, not taken from moto (which
//     reports no index capacity): writes to a sample of the jobs (one in ten
//     at full size) are charged from the item read before and after each
//     write by DynamoDB's documented rules (one write unit per started KB of
//     the larger image, doubled inside a transaction, plus one unit per
//     started KB of each index entry put or deleted, two when its key
//     changes), as in dynamojobstore's TestWriteCapacity; reads cost one
//     unit per started 4 KB strongly consistent, half eventually consistent
//     (index queries).
//     moto is much slower than the services it stands in for, so resends
//     are put off (JOBFLEET_RESEND_AFTER=1h) and the reaper sweeps every
//     30 s; its fixed cost is measured per pass and scaled to the default
//     sweep.
//  4. Failover (TestFailover): the real binaries (built once per run) in a
//     temporary data directory, as the e2e suite runs them. A job that
//     sleeps is started; at a random moment its worker is killed with
//     SIGKILL (the fleet event path: the dispatcher's local fleet sees the
//     exit, the reaper reclaims at once) or frozen with SIGSTOP (no event:
//     only the lease expiry and the reaper's sweep can recover it). The time
//     is from the signal to the next attempt's start. A SIGSTOP that catches
//     the worker holding a SQLite write lock is undone and repeated, and
//     counted: a process frozen inside a transaction stalls every other
//     process of the local profile for the busy timeout.
//  5. Footprint (TestFootprint): VmRSS (and VmHWM) from /proc of an idle
//     worker, the dispatcher and the reaper after a warm-up of echo jobs
//     and a few seconds without work, and the sizes of the three binaries,
//     built as the container image builds them (static, without symbols).
//     On the local profile: the default build (both profiles) and the
//     local profile's alone (-tags jobfleet_noaws, see package profile).
//     On the aws profile, against the moto server: the worker and the
//     reaper of the default build, of the aws profile's alone (-tags
//     jobfleet_nolocal) and of the image for ECS (-tags
//     jobfleet_nolocal,jobfleet_ecs: also without the SDK's config
//     package, see package awsconfig), with the jobs submitted in process
//     (an aws-only dispatcher would provision ECS tasks).
//
// Full runs are sequential (tests do not call t.Parallel) because
// concurrent scenarios would measure each other; smoke runs use t.Parallel.
// The machine's load average before and after is in the report: these
// machines are shared, and a load above the CPU count means other work ran
// at the same time.
package bench
