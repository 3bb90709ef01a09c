package sqlitejobstore_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/jobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/sqlitejobstore"
	"github.com/jobfleet/jobfleet/pkg/jobstore/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Harness {
		path := filepath.Join(t.TempDir(), "jobs.db")
		open := func(t *testing.T, opts *jobstore.Options) *jobstore.Store {
			var o sqlitejobstore.Options
			if opts != nil {
				o.Clock = opts.Clock
			}
			s, err := sqlitejobstore.Open(t.Context(), path, &o)
			require.NoError(t, err)
			t.Cleanup(func() { require.NoError(t, s.Close()) })
			return s
		}
		return storetest.Harness{Store: open(t, nil), Open: open}
	})
}
