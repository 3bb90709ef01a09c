package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jobfleet/jobfleet/pkg/client"
	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
)

// Submit a job, wait for it to finish and read its result. (It needs a
// running dispatcher, so it is not run as a test.)
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c, err := client.New("http://127.0.0.1:8080", &client.Options{Token: "my-api-token-0123456789"})
	if err != nil {
		log.Fatal(err)
	}
	j, err := c.Submit(ctx, job.Submission{
		Type:    "sleep",
		Payload: json.RawMessage(`{"seconds": 2}`),
		Key:     "nightly-2031-05-06", // a second submit with this key gets the same job
	})
	var p *client.Problem
	switch {
	case errors.Is(err, errcode.InvalidArgument) && errors.As(err, &p):
		for _, e := range p.Errors {
			log.Printf("%s: %s", e.Field, e.Detail)
		}
		log.Fatal("invalid submission")
	case err != nil:
		log.Fatal(err)
	}
	j, err = c.Wait(ctx, j.ID, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	if j.Status != job.Succeeded {
		log.Fatalf("job %s ended %s: %s", j.ID, j.Status, j.Error)
	}
	res, err := c.Result(ctx, j.ID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", res)
}
