package sqsqueue_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

func TestMain(m *testing.M) {
	code := awstest.Main(m)
	if code == 0 {
		// The SDK's HTTP transports keep idle keep-alive connections,
		// each with a reader and a writer goroutine; those are not leaks.
		err := goleak.Find(
			goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		)
		if err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
