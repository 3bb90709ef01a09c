package memjobstore_test

import (
	"testing"

	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/memjobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		b := memjobstore.NewBackend()
		open := func(t *testing.T, opts *jobstore.Options) *jobstore.Store {
			var o memjobstore.Options
			if opts != nil {
				o.Clock = opts.Clock
			}
			s := b.Open(&o)
			t.Cleanup(func() { s.Close() })
			return s
		}
		return storetest.Harness{Store: open(t, nil), Open: open}
	})
}
