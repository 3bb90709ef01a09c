package ecsfleet_test

import (
	"os"
	"testing"

	"github.com/jobfleet/jobfleet/pkg/awstest"
)

// TestMain stops the moto server the conformance test starts. The package
// starts no goroutines of its own, so there is no leak check here: the
// SDK's HTTP transport keeps idle connections on goroutines of its own.
func TestMain(m *testing.M) { os.Exit(awstest.Main(m)) }
