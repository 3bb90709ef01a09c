package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/jobfleet/jobfleet/pkg/worker"
)

type resize struct {
	URL   string `json:"url"`
	Width int    `json:"width"`
}

// Validate is called on every payload before the handler runs (and by the
// dispatcher, for the built-in types, before it accepts a job).
func (r *resize) Validate() error {
	if r.Width <= 0 {
		return errors.New("width must be positive")
	}
	return nil
}

// A handler is a function of a typed payload; the registry decodes the
// payload strictly and encodes the result. Build a worker binary around a
// registry with workermain.Run.
func ExampleRegister() {
	reg := worker.NewRegistry()
	worker.Register(reg, "resize", func(ctx context.Context, j *worker.Job, p resize) (map[string]int, error) {
		fmt.Fprintf(j.Log, "resizing %s\n", p.URL)
		_ = j.Progress(map[string]int{"done": 1, "total": 1})
		return map[string]int{"width": p.Width}, nil
	})

	h, _ := reg.Lookup("resize")
	res, err := h.Handle(context.Background(), &worker.Job{
		ID: "01J0000000000000000000000", Type: "resize", Attempt: 1,
		Payload: json.RawMessage(`{"url":"s3://in/cat.png","width":128}`),
		Log:     io.Discard, Logger: slog.New(slog.DiscardHandler),
	})
	fmt.Println(string(res), err)
	fmt.Println(reg.Validate("resize", json.RawMessage(`{"url":"x","width":0}`)))
	fmt.Println(reg.Validate("resize", json.RawMessage(`{"url":"x","height":3}`)))
	// Output:
	// {"width":128} <nil>
	// payload for resize: width must be positive
	// payload for resize: json: unknown field "height"
}
