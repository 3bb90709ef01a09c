package dynamojobstore

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

// TestMain starts moto for the package (awstest) and then checks that no
// test left a goroutine behind. The SDK's pooled HTTP connections keep
// their read and write loops until they idle out; they are not leaks.
func TestMain(m *testing.M) {
	code := awstest.Main(m)
	if code == 0 {
		if err := goleak.Find(
			goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
			goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
			goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}
