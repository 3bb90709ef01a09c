package dynamojobstore

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

// Lease items live beside jobs: pk "lease#<name>", the holder, until (epoch
// ms) and a TTL a day after until, so abandoned leases are cleaned up.
const (
	leasePrefix   = "lease#"
	attrHolder    = "holder"
	attrLeaseTill = "until"
)

var _ jobstore.Leaser = (*Driver)(nil)

// AcquireLease implements jobstore.Leaser with one conditional PutItem.
func (d *Driver) AcquireLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error) {
	if err := d.check(); err != nil {
		return false, err
	}
	_, err := d.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(d.table),
		Item: map[string]types.AttributeValue{
			AttrPK:        s(leasePrefix + name),
			attrHolder:    s(holder),
			attrLeaseTill: n(until.UnixMilli()),
			AttrTTL:       n(until.Add(24 * time.Hour).Unix()),
		},
		ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #until <= :now OR #holder = :holder"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrPK, "#until": attrLeaseTill, "#holder": attrHolder},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": n(now.UnixMilli()), ":holder": s(holder),
		},
	})
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return false, nil
	}
	if err != nil {
		return false, mapErr(ctx, err, "acquire lease %s", name)
	}
	return true, nil
}

// ReleaseLease implements jobstore.Leaser.
func (d *Driver) ReleaseLease(ctx context.Context, name, holder string) error {
	if err := d.check(); err != nil {
		return err
	}
	_, err := d.client.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 aws.String(d.table),
		Key:                       map[string]types.AttributeValue{AttrPK: s(leasePrefix + name)},
		ConditionExpression:       aws.String("#holder = :holder"),
		ExpressionAttributeNames:  map[string]string{"#holder": attrHolder},
		ExpressionAttributeValues: map[string]types.AttributeValue{":holder": s(holder)},
	})
	var ccf *types.ConditionalCheckFailedException
	if err == nil || errors.As(err, &ccf) {
		return nil
	}
	return mapErr(ctx, err, "release lease %s", name)
}
