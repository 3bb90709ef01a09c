package dynamojobstore

// For the conformance test (package dynamojobstore_test).
var (
	NewTestClient = newTestClient
	NewTestTable  = newTestTable
	IsMoto        = isMoto
)
