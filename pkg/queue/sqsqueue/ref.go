package sqsqueue

import (
	"context"
	"net/url"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// ref is an existing queue as Open and CreateQueue's dead-letter queue
// take it: a URL, an ARN or a name (see "Naming a queue" in the package
// doc).
type ref struct {
	url     string // given as a URL: used as it is
	name    string // the queue's name
	account string // given as an ARN: the owner's account id
	region  string // given as an ARN: the queue's region
}

// parseRef reads s as a queue URL ("https://..."), a queue ARN ("arn:...")
// or else a queue name. An empty s, a URL without a path or a malformed
// ARN is errcode.InvalidArgument; the message does not repeat s, which the
// caller names.
func parseRef(s string) (ref, error) {
	switch {
	case s == "":
		return ref{}, errcode.New(errcode.InvalidArgument, "empty name")
	case strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://"):
		u, err := url.Parse(s)
		if err != nil || path.Base(u.Path) == "/" || path.Base(u.Path) == "." {
			return ref{}, errcode.New(errcode.InvalidArgument, "not a queue URL")
		}
		return ref{url: s, name: path.Base(u.Path)}, nil
	case strings.HasPrefix(s, "arn:"):
		return parseARN(s)
	}
	return ref{name: s}, nil
}

// arnForm is the form of a queue ARN, for messages.
const arnForm = "arn:<partition>:sqs:<region>:<account-id>:<queue-name>"

// parseARN reads a queue ARN.
func parseARN(s string) (ref, error) {
	bad := func(why string, args ...any) (ref, error) {
		return ref{}, errcode.New(errcode.InvalidArgument, "not an SQS queue ARN ("+arnForm+"): "+why, args...)
	}
	a, err := arn.Parse(s)
	switch {
	case err != nil:
		return bad("it has fewer than six parts separated by ':'")
	case a.Partition == "":
		return bad("no partition")
	case a.Service != "sqs":
		return bad("the service is %q", a.Service)
	case a.Region == "":
		return bad("no region")
	case !accountID(a.AccountID):
		return bad("the account id %q is not 12 digits", a.AccountID)
	case !validName(a.Resource):
		return bad("the queue name %q is not 1-80 letters, digits, - and _ (and .fifo for a FIFO queue)", a.Resource)
	}
	return ref{name: a.Resource, account: a.AccountID, region: a.Region}, nil
}

// accountID reports whether s is an AWS account id: 12 digits.
func accountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validName reports whether name is an SQS queue name, standard or FIFO.
func validName(name string) bool {
	if base, ok := strings.CutSuffix(name, ".fifo"); ok {
		return queue.ValidName(base) && len(name) <= 80
	}
	return queue.ValidName(name)
}

// urlGetter is what resolving a queue needs; API and AdminAPI have it.
type urlGetter interface {
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
}

// resolve returns the URL of the queue r. A URL is used as it is; a name
// is resolved with GetQueueUrl in the client's account, an ARN with
// GetQueueUrl for its name and QueueOwnerAWSAccountId its account (how SQS
// finds a queue of another account, which must have granted access). A
// client calls one region's endpoint, and SQS looks a name up in that
// region only, so an ARN of another region than the client's (when the
// client says which: an *sqs.Client) is errcode.InvalidArgument rather
// than the QueueDoesNotExist SQS would answer.
func (r ref) resolve(ctx context.Context, client urlGetter) (string, error) {
	if r.url != "" {
		return r.url, nil
	}
	if r.region != "" {
		if c, ok := client.(interface{ Options() sqs.Options }); ok {
			if have := c.Options().Region; have != "" && have != r.region {
				return "", errcode.New(errcode.InvalidArgument,
					"the queue is in region %s, but the SQS client calls region %s (run in region %s, e.g. AWS_REGION=%s, or name a queue of region %s)",
					r.region, have, r.region, r.region, have)
			}
		}
	}
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(r.name)}
	if r.account != "" {
		in.QueueOwnerAWSAccountId = aws.String(r.account)
	}
	out, err := client.GetQueueUrl(ctx, in)
	if err != nil {
		return "", mapErr(ctx, err, "get queue url")
	}
	return aws.ToString(out.QueueUrl), nil
}
