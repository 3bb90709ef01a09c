package fileblob_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/blob/blobtest"
	"github.com/jobfleet/jobfleet/pkg/blob/fileblob"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		b, err := fileblob.Open(filepath.Join(t.TempDir(), "bucket"), nil)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return blobtest.Harness{Bucket: b}
	})
}
