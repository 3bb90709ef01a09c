package dynamojobstore

// For the conformance test (package dynamojobstore_test).
var (
	NewTestClient = newTestClient
	NewTestTable  = newTestTable
	IsMoto        = isMoto
)

// For the capacity tests (package dynamojobstore_test, which imports
// dynamometer, which imports this package).
var (
	T0        = t0
	NewJob    = newJob
	EncodeJob = encodeJob
)
