package sqlitejobstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
)

func ExampleOpen() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "jobfleet")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	store, err := sqlitejobstore.Open(ctx, filepath.Join(dir, "jobs.db"), nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()

	now := time.Now()
	j := job.DefaultPolicy.New(&job.Submission{Type: "resize", Key: "img-1"}, job.DefaultLimits, job.NewID(now), now)
	if _, err := store.Create(ctx, j); err != nil {
		panic(err)
	}
	// A second submission with the same key is answered with the first job.
	dup := job.DefaultPolicy.New(&job.Submission{Type: "resize", Key: "img-1"}, job.DefaultLimits, job.NewID(now), now)
	res, err := store.Create(ctx, dup)
	if err != nil {
		panic(err)
	}
	fmt.Println("duplicate held by the first job:", res[0].Holder == j.ID)

	// A worker starts it with the message {id, attempt}; a redelivered
	// message loses.
	msg := job.Message{ID: j.ID, Attempt: j.Attempt}
	running, err := store.ApplyOne(ctx, job.DefaultPolicy.Start(msg, "worker-1", now))
	if err != nil {
		panic(err)
	}
	fmt.Println(running.Status, running.Attempt, running.Owner)
	_, err = store.ApplyOne(ctx, job.DefaultPolicy.Start(msg, "worker-2", now))
	fmt.Println("redelivery lost:", errors.Is(err, errcode.FailedPrecondition))
	// Output:
	// duplicate held by the first job: true
	// RUNNING 1 worker-1
	// redelivery lost: true
}
