package dynamojobstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/dynamojobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		table := dynamojobstore.NewTestTable(t)
		open := func(t *testing.T, opts *jobstore.Options) *jobstore.Store {
			var o dynamojobstore.Options
			if opts != nil {
				o.Clock = opts.Clock
			}
			s, err := dynamojobstore.Open(t.Context(), dynamojobstore.NewTestClient(t), table, &o)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return s
		}
		h := storetest.Harness{Store: open(t, nil), Open: open}
		if !dynamojobstore.IsMoto(t) {
			// Global secondary indexes are eventually consistent on AWS
			// (moto updates them synchronously).
			h.IndexLag = 10 * time.Second
		}
		return h
	})
}
