package s3blob_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/awstest"
	"github.com/jobfleet/jobfleet/pkg/blob"
	"github.com/jobfleet/jobfleet/pkg/blob/blobtest"
	"github.com/jobfleet/jobfleet/pkg/blob/s3blob"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	client := newClient(t)
	blobtest.Run(t, func(t *testing.T) blobtest.Harness {
		name := createBucket(t, client)
		b, err := s3blob.Open(t.Context(), client, name, nil)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return blobtest.Harness{Bucket: b}
	})
}

// newClient returns an S3 client for the test endpoint, which needs
// path-style addressing.
func newClient(t *testing.T) *s3.Client {
	return s3.NewFromConfig(awstest.Config(t), func(o *s3.Options) { o.UsePathStyle = true })
}

// createBucket creates a bucket named for t. At cleanup it requires that
// no multipart upload was left behind, then empties and deletes it.
func createBucket(t *testing.T, client *s3.Client) string {
	t.Helper()
	name := awstest.Name(t)
	require.NoError(t, s3blob.CreateBucket(t.Context(), client, name))
	t.Cleanup(func() {
		ctx := context.Background() // t.Context has ended by now
		uploads, err := client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(name)})
		require.NoError(t, err)
		for _, u := range uploads.Uploads {
			t.Errorf("multipart upload of %q left behind", aws.ToString(u.Key))
			_, err := client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(name), Key: u.Key, UploadId: u.UploadId})
			require.NoError(t, err)
		}
		p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: aws.String(name)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			require.NoError(t, err)
			if len(page.Contents) == 0 {
				continue
			}
			del := &types.Delete{Quiet: aws.Bool(true)}
			for _, o := range page.Contents {
				del.Objects = append(del.Objects, types.ObjectIdentifier{Key: o.Key})
			}
			out, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(name), Delete: del})
			require.NoError(t, err)
			require.Empty(t, out.Errors)
		}
		_, err = client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(name)})
		require.NoError(t, err)
	})
	return name
}

// keys lists every key in b.
func keys(t *testing.T, b *blob.Bucket, prefix string) []string {
	t.Helper()
	var out []string
	cursor := ""
	for {
		p, err := b.List(t.Context(), prefix, cursor, 0)
		require.NoError(t, err)
		for _, o := range p.Objects {
			out = append(out, o.Key)
		}
		if p.Next == "" {
			return out
		}
		cursor = p.Next
	}
}
