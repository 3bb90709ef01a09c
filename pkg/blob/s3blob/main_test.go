package s3blob_test

import (
	"os"
	"testing"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

func TestMain(m *testing.M) { os.Exit(awstest.MainLeakChecked(m)) }
