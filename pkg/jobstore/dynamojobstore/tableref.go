package dynamojobstore

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws/arn"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// tableARNForm is the form of a table ARN, for messages.
const tableARNForm = "arn:<partition>:dynamodb:<region>:<account-id>:table/<name>"

// tableName returns the name of the table given to Open: table itself, or
// the name in a table ARN. DynamoDB takes either as TableName (and as the
// key of BatchGetItem's RequestItems) in every call the driver makes, so
// the driver sends table as it was given; the name is for what needs the
// name alone.
//
// A malformed ARN (another service or resource type, such as an index or
// stream ARN, a part missing) is errcode.InvalidArgument. So is an ARN of
// another region than the client's, when the client says its region (an
// *dynamodb.Client): a client calls one region's endpoint, and DynamoDB
// refuses the ARN of another region there with ValidationException
// ("Invalid AWS region"). The message does not repeat table, which the
// caller names.
func tableName(client any, table string) (string, error) {
	if !strings.HasPrefix(table, "arn:") {
		return table, nil
	}
	bad := func(why string, args ...any) (string, error) {
		return "", errcode.New(errcode.InvalidArgument, "not a DynamoDB table ARN ("+tableARNForm+"): "+why, args...)
	}
	a, err := arn.Parse(table)
	if err != nil {
		return bad("it has fewer than six parts separated by ':'")
	}
	name, isTable := strings.CutPrefix(a.Resource, "table/")
	switch {
	case a.Partition == "":
		return bad("no partition")
	case a.Service != "dynamodb":
		return bad("the service is %q", a.Service)
	case a.Region == "":
		return bad("no region")
	case a.AccountID == "":
		return bad("no account id")
	case !isTable:
		return bad("the resource %q is not a table", a.Resource)
	case !validTableName(name):
		return bad("%q is not a table name (3-255 letters, digits, _, - and .; an index or stream ARN names no table)", name)
	}
	if c, ok := client.(interface{ Options() dynamodb.Options }); ok {
		if have := c.Options().Region; have != "" && have != a.Region {
			return "", errcode.New(errcode.InvalidArgument,
				"the table is in region %s, but the DynamoDB client calls region %s (run in region %s, e.g. AWS_REGION=%s)",
				a.Region, have, a.Region, a.Region)
		}
	}
	return name, nil
}

// validTableName reports whether name is a DynamoDB table name: 3-255
// letters, digits, '_', '-' and '.'.
func validTableName(name string) bool {
	if len(name) < 3 || len(name) > 255 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
