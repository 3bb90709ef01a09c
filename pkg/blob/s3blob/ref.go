package s3blob

import (
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// bucketParam returns the Bucket parameter of every call on bucket, as Open
// takes it (see "Naming a bucket" in the package doc):
//
//   - a name (or an access point alias, which S3 takes for one): as it is;
//   - a bucket ARN, arn:<partition>:s3:::<name>: the name, since S3 takes
//     no bucket ARN as Bucket (the SDK refuses one);
//   - a regional access point ARN (S3 or S3 on Outposts): as it is; the
//     SDK sends the call to the access point's endpoint. Multi-Region and
//     Object Lambda access points are refused: the first does not take
//     HeadBucket, the second does not take writes.
//
// Anything else beginning "arn:" is errcode.InvalidArgument. So is an
// access point ARN the SDK would refuse at every call (its endpoint rules
// fail before any request, which would look like a network failure): one
// of another partition than the client's, of another region without
// UseARNRegion, or with path-style addressing. The client is checked when it says its options
// (an *s3.Client). The message does not repeat bucket, which the caller
// names.
func bucketParam(client any, bucket string) (string, error) {
	if !strings.HasPrefix(bucket, "arn:") {
		return bucket, nil
	}
	bad := func(why string, args ...any) (string, error) {
		return "", errcode.New(errcode.InvalidArgument,
			"not an S3 bucket ARN (arn:<partition>:s3:::<bucket>) or access point ARN: "+why, args...)
	}
	a, err := arn.Parse(bucket)
	switch {
	case err != nil:
		return bad("it has fewer than six parts separated by ':'")
	case a.Partition == "":
		return bad("no partition")
	case a.Service == "s3" && a.Region == "" && a.AccountID == "":
		if a.Resource == "" || strings.ContainsAny(a.Resource, "/:") {
			return bad("the bucket name %q is not one (an object ARN names no bucket)", a.Resource)
		}
		return a.Resource, nil
	case a.Service == "s3-object-lambda":
		return bad("an Object Lambda access point transforms reads only; the store also writes")
	case a.Service != "s3" && a.Service != "s3-outposts":
		return bad("the service is %q", a.Service)
	case a.Region == "":
		return bad("a Multi-Region Access Point does not take every call the store makes (HeadBucket); use a regional access point or the bucket")
	case a.AccountID == "":
		return bad("no account id")
	case !accessPoint(a):
		return bad("the resource %q is not an access point", a.Resource)
	}
	c, ok := client.(interface{ Options() s3.Options })
	if !ok {
		return bucket, nil
	}
	o := c.Options()
	switch {
	case o.UsePathStyle:
		return bad("the client uses path-style addressing, which access points do not support")
	case o.Region != "" && partitionOf(o.Region) != a.Partition:
		return bad("the ARN is in partition %s, but the S3 client calls region %s of partition %s", a.Partition, o.Region, partitionOf(o.Region))
	case a.Region != "" && o.Region != "" && a.Region != o.Region && !o.UseARNRegion:
		return bad("the access point is in region %s, but the S3 client calls region %s (run in region %s, or set the client's UseARNRegion)",
			a.Region, o.Region, a.Region)
	}
	return bucket, nil
}

// accessPoint reports whether a names a regional access point:
// accesspoint/<name>, or outpost/<id>/accesspoint/<name> on Outposts.
func accessPoint(a arn.ARN) bool {
	parts := strings.Split(strings.ReplaceAll(a.Resource, ":", "/"), "/")
	switch {
	case slices.Contains(parts, ""):
		return false
	case a.Service == "s3-outposts":
		return len(parts) == 4 && parts[0] == "outpost" && parts[2] == "accesspoint"
	}
	return len(parts) == 2 && parts[0] == "accesspoint"
}

// partitionOf is the partition of a region, by its name.
func partitionOf(region string) string {
	switch {
	case strings.HasPrefix(region, "cn-"):
		return "aws-cn"
	case strings.HasPrefix(region, "us-gov-"):
		return "aws-us-gov"
	case strings.HasPrefix(region, "us-isob-"):
		return "aws-iso-b"
	case strings.HasPrefix(region, "us-iso-"):
		return "aws-iso"
	case strings.HasPrefix(region, "eu-isoe-"):
		return "aws-iso-e"
	}
	return "aws"
}
