package fileblob_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "fileblob-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	bucket, err := fileblob.Open(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer bucket.Close()

	ctx := context.Background()
	if _, err := bucket.PutBytes(ctx, "results/job-1/output.json", []byte(`{"ok":true}`), "application/json"); err != nil {
		log.Fatal(err)
	}
	rc, attrs, err := bucket.Get(ctx, "results/job-1/output.json", blob.Range{Offset: 1, Length: 4})
	if err != nil {
		log.Fatal(err)
	}
	defer rc.Close()
	part := make([]byte, 4)
	if _, err := rc.Read(part); err != nil {
		log.Fatal(err)
	}
	page, err := bucket.List(ctx, "results/", "", 100)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(part), attrs.Size, attrs.ContentType, len(page.Objects), page.Objects[0].Key)
	// Output: "ok" 11 application/json 1 results/job-1/output.json
}
