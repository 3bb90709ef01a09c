package sqlitequeue_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "sqlitequeue-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	db, err := sqlitequeue.OpenDB(ctx, filepath.Join(dir, "queue.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateQueue(ctx, "work-dlq", sqlitequeue.Config{}); err != nil {
		log.Fatal(err)
	}
	if err := db.CreateQueue(ctx, "work", sqlitequeue.Config{Visibility: time.Minute, DeadLetter: "work-dlq", MaxReceives: 5}); err != nil {
		log.Fatal(err)
	}
	work, err := db.Open(ctx, "work")
	if err != nil {
		log.Fatal(err)
	}
	defer work.Close()

	if _, err := work.Send(ctx, queue.SendEntry{Body: []byte(`{"id":"01J0","attempt":1}`)}); err != nil {
		log.Fatal(err)
	}
	msgs, err := work.Receive(ctx, queue.ReceiveOptions{Max: 10, Wait: time.Second})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("%s (receive %d)\n", m.Body, m.ReceiveCount)
		if _, err := work.Delete(ctx, m.Handle); err != nil {
			log.Fatal(err)
		}
	}
	d, err := work.Depth(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%+v\n", d)
	// Output:
	// {"id":"01J0","attempt":1} (receive 1)
	// {Visible:0 InFlight:0 Delayed:0}
}
