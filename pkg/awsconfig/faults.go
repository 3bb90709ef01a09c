package awsconfig

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"

	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// FaultsEnv names the variable that turns on fault injection for chaos
// runs: JOBFLEET_INJECT_AWS_FAULTS=0.05 fails 5% of AWS request attempts
// before they are sent, a third each as throttling, request timeouts (both
// retried by the SDK, and throttling also slows its adaptive rate limiter)
// and internal errors (which reach the caller). Never set it in production.
const FaultsEnv = "JOBFLEET_INJECT_AWS_FAULTS"

// InjectFaults returns a middleware that fails a fraction rate of request
// attempts (after the retry middleware, so each attempt draws) with
// ThrottlingException, RequestTimeout or InternalError API errors. The draws come from a
// seeded source, so a run is repeatable for a given order of calls.
func InjectFaults(rate float64, seed uint64) func(*middleware.Stack) error {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(s *middleware.Stack) error {
		return s.Finalize.Add(middleware.FinalizeMiddlewareFunc("jobfleetInjectFaults",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
				mu.Lock()
				r, kind := rng.Float64(), rng.IntN(3)
				mu.Unlock()
				if r < rate {
					code := []string{"ThrottlingException", "RequestTimeout", "InternalError"}[kind]
					return middleware.FinalizeOutput{}, middleware.Metadata{}, &smithy.GenericAPIError{
						Code: code, Message: "injected by " + FaultsEnv, Fault: smithy.FaultServer,
					}
				}
				return next.HandleFinalize(ctx, in)
			}), middleware.After)
	}
}

// faultsFromEnv returns the fault injector FaultsEnv asks for, or nil.
func faultsFromEnv() (func(*middleware.Stack) error, error) {
	v := os.Getenv(FaultsEnv)
	if v == "" {
		return nil, nil
	}
	rate, err := strconv.ParseFloat(v, 64)
	if err != nil || rate < 0 || rate > 1 {
		return nil, fmt.Errorf("%s=%q: want a fraction between 0 and 1", FaultsEnv, v)
	}
	return InjectFaults(rate, uint64(os.Getpid())), nil
}
