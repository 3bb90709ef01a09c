package dynamojobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
	"github.com/jobfleet/jobfleet/pkg/job"
	"github.com/jobfleet/jobfleet/pkg/jobstore"
)

var (
	policy = job.DefaultPolicy
	t0     = time.Date(2099, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
)

func newJob(key string) *job.Job {
	s := job.Submission{Type: "t", Key: key, Payload: []byte(`{"n":1}`)}
	return policy.New(&s, job.DefaultLimits, job.NewID(t0), t0)
}

// running returns a keyed job as a worker holds it after starting it.
func running(key string) *job.Job {
	j := newJob(key)
	policy.Start(job.Message{ID: j.ID}, "w1", t0).Set.Apply(j)
	return j
}

// Tests with the fake client use the default layout.
func encodeJob(j *job.Job) map[string]types.AttributeValue { return DefaultLayout.encodeJob(j) }

func buildUpdate(c job.Change, key string) update { return DefaultLayout.buildUpdate(c, key) }

func requireCode(t *testing.T, want errcode.Code, err error) {
	t.Helper()
	require.Error(t, err, "want %s", want)
	require.Equal(t, want, errcode.Of(err), "error: %v", err)
}

func TestThrottlingIsUnavailableAndNotRetried(t *testing.T) {
	t.Parallel()
	for _, mk := range []func() error{
		throttled,
		func() error { return &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")} },
		func() error { return &types.RequestLimitExceeded{Message: aws.String("account limit")} },
		func() error { return &types.InternalServerError{Message: aws.String("oops")} },
		func() error { return &types.TransactionConflictException{Message: aws.String("conflict")} },
		func() error { return errors.New("dial tcp: connection refused") },
	} {
		t.Run(fmt.Sprintf("%T", mk()), func(t *testing.T) {
			t.Parallel()
			f := &fakeClient{
				get:      func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return nil, mk() },
				put:      func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, mk() },
				update:   func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, mk() },
				tx:       func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) { return nil, mk() },
				query:    func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error) { return nil, mk() },
				batchGet: func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) { return nil, mk() },
			}
			d := newFakeDriver(f)
			ctx := t.Context()
			j := running("k")
			calls := func() int { return len(f.calls) }

			steps := []struct {
				name string
				run  func() error
			}{
				{"get", func() error { _, err := d.Get(ctx, j.ID); return err }},
				{"create unkeyed", func() error { _, err := d.Create(ctx, []*job.Job{newJob("")}); return err }},
				{"create keyed", func() error { _, err := d.Create(ctx, []*job.Job{newJob("k2")}); return err }},
				{"renew", func() error { _, err := d.Apply(ctx, []job.Change{policy.Renew(j, t0, nil)}); return err }},
				{"finish keyed", func() error {
					_, err := d.Apply(ctx, []job.Change{policy.Finish(j, t0, job.End{Outcome: job.OutcomeSucceeded})})
					return err
				}},
			}
			for _, s := range steps {
				before := calls()
				err := s.run()
				requireCode(t, errcode.Unavailable, err)
				require.True(t, errcode.Retryable(err), s.name)
				require.Equal(t, 1, calls()-before, "%s: one call, no retries of the driver's own", s.name)
			}
			// Due and List query their shards at once: one call per shard.
			before := calls()
			_, err := d.Due(ctx, job.Queued, t0, 10)
			requireCode(t, errcode.Unavailable, err)
			require.Equal(t, DefaultLayout.DueShards, calls()-before)
			before = calls()
			_, err = d.List(ctx, jobstore.ListQuery{Limit: 10})
			requireCode(t, errcode.Unavailable, err)
			require.Equal(t, DefaultLayout.ListShards, calls()-before)
			before = calls()
			_, err = d.Owned(ctx, "w1", 10)
			requireCode(t, errcode.Unavailable, err)
			require.Equal(t, DefaultLayout.DueShards, calls()-before, "one query per RUNNING shard")
		})
	}
}

// sdkClient returns a real DynamoDB client whose requests go to rt, with
// the standard retryer (3 attempts) but no backoff sleep or retry quota,
// so tests see exactly what the SDK resends.
func sdkClient(rt http.RoundTripper) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://dynamodb.test"),
		Credentials:  credentials.NewStaticCredentialsProvider("k", "s", ""),
		HTTPClient:   &http.Client{Transport: rt},
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = 3
			o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
			o.RateLimiter = ratelimit.None
		}),
	})
}

// roundTripper answers DynamoDB requests by operation (X-Amz-Target).
type roundTripper func(op string, body []byte) (status int, resp string)

func (rt roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "DynamoDB_20120810.")
	status, resp := rt(op, body)
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": []string{"application/x-amz-json-1.0"}},
		Body:       io.NopCloser(strings.NewReader(resp)),
		Request:    r,
	}, nil
}

const describeJSON = `{"Table":{"TableName":"jobs","TableStatus":"ACTIVE","GlobalSecondaryIndexes":[
	{"IndexName":"active","IndexStatus":"ACTIVE",
	 "KeySchema":[{"AttributeName":"due_pk","KeyType":"HASH"},{"AttributeName":"due_at","KeyType":"RANGE"}],
	 "Projection":{"ProjectionType":"INCLUDE","NonKeyAttributes":["owner"]}},
	{"IndexName":"list","IndexStatus":"ACTIVE",
	 "KeySchema":[{"AttributeName":"list_pk","KeyType":"HASH"},{"AttributeName":"id","KeyType":"RANGE"}],
	 "Projection":{"ProjectionType":"INCLUDE","NonKeyAttributes":["type"]}}]}}`

func TestThrottlingRetriedBySDKOnly(t *testing.T) {
	t.Parallel()
	var attempts atomic.Int32
	client := sdkClient(roundTripper(func(op string, body []byte) (int, string) {
		switch {
		case op == "DescribeTable":
			return 200, describeJSON
		case strings.Contains(string(body), layoutPK):
			return 200, `{}`
		}
		attempts.Add(1)
		return 400, `{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}`
	}))
	d, err := OpenDriver(t.Context(), client, "jobs", nil)
	require.NoError(t, err)
	_, err = d.Get(t.Context(), newJob("").ID)
	requireCode(t, errcode.Unavailable, err)
	require.Equal(t, int32(3), attempts.Load(), "the SDK's 3 attempts, and no more")
}

func TestClientRequestToken(t *testing.T) {
	t.Parallel()
	j := running("order-1")
	done := j.Clone()
	finish := policy.Finish(j, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded, Result: []byte(`{"ok":true}`)})
	finish.Set.Apply(done)

	t.Run("derived from the change", func(t *testing.T) {
		t.Parallel()
		var n atomic.Int32
		f := &fakeClient{
			// The first attempt's answer is lost (a conflict, say); the
			// caller retries the same change.
			tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
				if n.Add(1) == 1 {
					return nil, &types.TransactionConflictException{Message: aws.String("conflict")}
				}
				return &dynamodb.TransactWriteItemsOutput{}, nil
			},
			get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				return &dynamodb.GetItemOutput{Item: encodeJob(done)}, nil
			},
		}
		d := newFakeDriver(f)
		_, err := d.Apply(t.Context(), []job.Change{finish})
		requireCode(t, errcode.Unavailable, err)
		res, err := d.Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		require.Equal(t, job.Succeeded, res[0].Job.Status)

		// Other changes get other tokens: another outcome, another owner,
		// another key, another job, other result bytes.
		other := func(c job.Change) job.Change { return c }
		spaced := finish
		spaced.Set.Values.Result = []byte(`{ "ok": true }`)
		otherOwner := finish
		otherOwner.If.Owner = "w2"
		otherKey := finish
		otherKey.Key = "order-2"
		otherJob := finish
		otherJob.ID = newJob("").ID
		for _, c := range []job.Change{
			other(policy.Finish(j, t0.Add(time.Second), job.End{Outcome: job.OutcomePermanent, Reason: "no"})),
			spaced, otherOwner, otherKey, otherJob,
		} {
			_, err := d.Apply(t.Context(), []job.Change{c})
			require.NoError(t, err)
		}
		txs := inputs[*dynamodb.TransactWriteItemsInput](f)
		require.Len(t, txs, 7)
		tokens := map[string]int{}
		for _, in := range txs {
			tok := aws.ToString(in.ClientRequestToken)
			require.NotEmpty(t, tok)
			require.LessOrEqual(t, len(tok), 36, "DynamoDB takes tokens of up to 36 characters")
			tokens[tok]++
		}
		require.Equal(t, aws.ToString(txs[0].ClientRequestToken), aws.ToString(txs[1].ClientRequestToken), "the same change, the same token")
		require.Len(t, tokens, 6, "every other change has a token of its own")
	})

	t.Run("reused by the SDK's retries", func(t *testing.T) {
		t.Parallel()
		var mu sync.Mutex
		var tokens []string
		client := sdkClient(roundTripper(func(op string, body []byte) (int, string) {
			switch op {
			case "DescribeTable":
				return 200, describeJSON
			case "TransactWriteItems":
				mu.Lock()
				defer mu.Unlock()
				_, rest, _ := strings.Cut(string(body), `"ClientRequestToken":"`)
				tok, _, _ := strings.Cut(rest, `"`)
				tokens = append(tokens, tok)
				if len(tokens) == 1 { // committed, but the answer is a 500
					return 500, `{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"try again"}`
				}
				return 200, `{}`
			}
			return 200, `{}` // GetItem: no item (the result does not matter here)
		}))
		d, err := OpenDriver(t.Context(), client, "jobs", nil)
		require.NoError(t, err)
		_, err = d.Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		require.Len(t, tokens, 2)
		require.Equal(t, requestToken("jobs", finish.ID, finish.Key, buildUpdate(finish, finish.Key)), tokens[0])
		require.Equal(t, tokens[0], tokens[1], "the retry carries the same token")
	})
}

// DynamoDB refuses an update that would grow an item past 400 KB with a
// ValidationException: that entry fails with InvalidArgument, and the call
// does not.
func TestValidationIsInvalidArgument(t *testing.T) {
	t.Parallel()
	cur := running("")
	f := &fakeClient{update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return nil, apiError("ValidationException")
	}}
	f.put = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		return nil, apiError("ValidationException")
	}
	d := newFakeDriver(f)
	res, err := d.Apply(t.Context(), []job.Change{policy.Renew(cur, t0, []byte(`"big"`))})
	require.NoError(t, err)
	requireCode(t, errcode.InvalidArgument, res[0].Err)
	require.False(t, errcode.Retryable(res[0].Err))
	cres, err := d.Create(t.Context(), []*job.Job{newJob("")})
	require.NoError(t, err)
	requireCode(t, errcode.InvalidArgument, cres[0].Err)
}

func TestTransactionConflict(t *testing.T) {
	t.Parallel()
	j := running("k")
	for name, txErr := range map[string]error{
		"exception": &types.TransactionConflictException{Message: aws.String("conflict")},
		"reason":    canceledTx(reason(reasonConflict, nil), reason(reasonNone, nil)),
		"throttled": canceledTx(reason(reasonNone, nil), reason(reasonThrottling, nil)),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := &fakeClient{tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) { return nil, txErr }}
			d := newFakeDriver(f)
			_, err := d.Apply(t.Context(), []job.Change{policy.Finish(j, t0, job.End{Outcome: job.OutcomeSucceeded})})
			requireCode(t, errcode.Unavailable, err)
			_, err = d.Create(t.Context(), []*job.Job{newJob("k")})
			requireCode(t, errcode.Unavailable, err)
		})
	}
}

func TestCreateCancellationReasons(t *testing.T) {
	t.Parallel()
	claim := func(holder, hash string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{AttrPK: s(keyPK("k")), AttrHolder: s(holder), AttrPayloadHash: s(hash)}
	}
	other := newJob("k")
	other.PayloadHash = "other-hash"
	cases := []struct {
		name       string
		reasons    []types.CancellationReason
		code       errcode.Code
		holder     string // "self" for the new job's own id
		holderHash string
	}{
		{"key taken", []types.CancellationReason{reason(reasonCondition, claim(other.ID, "h1")), reason(reasonNone, nil)},
			errcode.AlreadyExists, other.ID, "h1"},
		{"id taken", []types.CancellationReason{reason(reasonNone, nil), reason(reasonCondition, encodeJob(other))},
			errcode.AlreadyExists, "self", "other-hash"},
		{"both taken: the id wins", []types.CancellationReason{reason(reasonCondition, claim("01ARZ3NDEKTSV4RRFFQ69G5FAV", "h1")), reason(reasonCondition, encodeJob(other))},
			errcode.AlreadyExists, "self", "other-hash"},
		{"item too large", []types.CancellationReason{reason(reasonNone, nil), reason(reasonValidation, nil)},
			errcode.InvalidArgument, "", ""},
		{"unreadable claim", []types.CancellationReason{reason(reasonCondition, map[string]types.AttributeValue{AttrPK: s(keyPK("k"))}), reason(reasonNone, nil)},
			errcode.Internal, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeClient{
				tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
					return nil, canceledTx(c.reasons...)
				},
				put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return &dynamodb.PutItemOutput{}, nil },
			}
			d := newFakeDriver(f)
			j := newJob("k")
			res, err := d.Create(t.Context(), []*job.Job{j, newJob("")})
			require.NoError(t, err, "entries answered: no call error")
			require.NoError(t, res[1].Err, "the other entry is stored")
			requireCode(t, c.code, res[0].Err)
			want := c.holder
			if want == "self" {
				want = j.ID
			}
			require.Equal(t, want, res[0].Holder)
			require.Equal(t, c.holderHash, res[0].HolderPayloadHash)

			tx := inputs[*dynamodb.TransactWriteItemsInput](f)[0]
			require.Equal(t, keyPK("k"), pkOf(tx.TransactItems[0].Put.Item), "the key item first")
			require.Equal(t, jobPK(j.ID), pkOf(tx.TransactItems[1].Put.Item))
		})
	}
}

func TestApplyCancellationReasons(t *testing.T) {
	t.Parallel()
	cur := running("k")
	finish := policy.Finish(cur, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded})
	done := cur.Clone()
	finish.Set.Apply(done)
	taken := cur.Clone() // another worker took it over
	policy.Takeover(cur, "w2", t0.Add(time.Minute)).Set.Apply(taken)

	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		f := &fakeClient{tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, canceledTx(reason(reasonCondition, nil), reason(reasonNone, nil))
		}}
		res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		requireCode(t, errcode.NotFound, res[0].Err)
		require.Nil(t, res[0].Job)
	})

	t.Run("lost: the record as found", func(t *testing.T) {
		t.Parallel()
		f := &fakeClient{tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, canceledTx(reason(reasonCondition, encodeJob(taken)), reason(reasonNone, nil))
		}}
		res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		requireCode(t, errcode.FailedPrecondition, res[0].Err)
		require.Equal(t, "w2", res[0].Job.Owner)
		require.Len(t, f.calls, 2, "describe, transaction: no read")
	})

	t.Run("item too large", func(t *testing.T) {
		t.Parallel()
		f := &fakeClient{tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, canceledTx(reason(reasonValidation, nil), reason(reasonNone, nil))
		}}
		res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		requireCode(t, errcode.InvalidArgument, res[0].Err)
	})

	t.Run("won: the record read back", func(t *testing.T) {
		t.Parallel()
		f := &fakeClient{
			tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
				return &dynamodb.TransactWriteItemsOutput{}, nil
			},
			get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				require.True(t, aws.ToBool(in.ConsistentRead))
				return &dynamodb.GetItemOutput{Item: encodeJob(done)}, nil
			},
		}
		res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{finish})
		require.NoError(t, err)
		require.NoError(t, res[0].Err)
		require.Equal(t, job.Succeeded, res[0].Job.Status)
		tx := inputs[*dynamodb.TransactWriteItemsInput](f)[0]
		require.Len(t, tx.TransactItems, 2)
		require.Equal(t, jobPK(cur.ID), pkOf(tx.TransactItems[0].Update.Key))
		require.Equal(t, keyPK("k"), pkOf(tx.TransactItems[1].Delete.Key))
	})
}

// A terminal change whose key claim cannot be deleted because it names
// another job (a claim already broken) writes the job alone and leaves the
// other job's claim.
func TestKeyDeleteFails(t *testing.T) {
	t.Parallel()
	cur := running("k")
	finish := policy.Finish(cur, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded})
	done := cur.Clone()
	finish.Set.Apply(done)
	f := &fakeClient{
		tx: func(*dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
			return nil, canceledTx(reason(reasonNone, nil), reason(reasonCondition, map[string]types.AttributeValue{
				AttrPK: s(keyPK("k")), AttrHolder: s("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
			}))
		},
		update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			return &dynamodb.UpdateItemOutput{Attributes: encodeJob(done)}, nil
		},
	}
	d := newFakeDriver(f)
	res, err := d.Apply(t.Context(), []job.Change{finish})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.Equal(t, job.Succeeded, res[0].Job.Status)

	up := inputs[*dynamodb.UpdateItemInput](f)
	require.Len(t, up, 1)
	tx := inputs[*dynamodb.TransactWriteItemsInput](f)[0]
	require.Equal(t, aws.ToString(tx.TransactItems[0].Update.ConditionExpression), aws.ToString(up[0].ConditionExpression),
		"the same condition, the stored key included")
	require.Equal(t, aws.ToString(tx.TransactItems[0].Update.UpdateExpression), aws.ToString(up[0].UpdateExpression))
}

// A terminal change that names the wrong key is redone with the key the
// record holds, so that the claim is released.
func TestWrongKeyInChange(t *testing.T) {
	t.Parallel()
	cur := running("real-key")
	for name, key := range map[string]string{"other key": "wrong-key", "no key": ""} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := policy.Finish(cur, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded})
			c.Key = key
			done := cur.Clone()
			c.Set.Apply(done)
			f := &fakeClient{
				// Without a key: an update conditional on there being none.
				update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
					return nil, &types.ConditionalCheckFailedException{Message: aws.String("cond"), Item: encodeJob(cur)}
				},
				tx: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
					if pkOf(in.TransactItems[1].Delete.Key) != keyPK("real-key") {
						return nil, canceledTx(reason(reasonCondition, encodeJob(cur)), reason(reasonNone, nil))
					}
					return &dynamodb.TransactWriteItemsOutput{}, nil
				},
				get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
					return &dynamodb.GetItemOutput{Item: encodeJob(done)}, nil
				},
			}
			res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{c})
			require.NoError(t, err)
			require.NoError(t, res[0].Err)
			require.Equal(t, job.Succeeded, res[0].Job.Status)
			txs := inputs[*dynamodb.TransactWriteItemsInput](f)
			require.NotEmpty(t, txs)
			require.Equal(t, keyPK("real-key"), pkOf(txs[len(txs)-1].TransactItems[1].Delete.Key))
		})
	}
}

// When the retry with the stored key loses as well (the job moved on in
// between), the change lost: FailedPrecondition with the record as found.
func TestWrongKeyThenLost(t *testing.T) {
	t.Parallel()
	cur := running("real-key")
	c := policy.Finish(cur, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded})
	c.Key = "wrong-key"
	taken := cur.Clone()
	policy.Takeover(cur, "w2", t0.Add(time.Minute)).Set.Apply(taken)
	f := &fakeClient{tx: func(in *dynamodb.TransactWriteItemsInput) (*dynamodb.TransactWriteItemsOutput, error) {
		if pkOf(in.TransactItems[1].Delete.Key) == keyPK("wrong-key") {
			return nil, canceledTx(reason(reasonCondition, encodeJob(cur)), reason(reasonNone, nil))
		}
		return nil, canceledTx(reason(reasonCondition, encodeJob(taken)), reason(reasonNone, nil))
	}}
	res, err := newFakeDriver(f).Apply(t.Context(), []job.Change{c})
	require.NoError(t, err)
	requireCode(t, errcode.FailedPrecondition, res[0].Err)
	require.Equal(t, "w2", res[0].Job.Owner)
	require.Len(t, inputs[*dynamodb.TransactWriteItemsInput](f), 2, "one retry, no more")
}

func TestBatchEntriesIndependent(t *testing.T) {
	t.Parallel()
	jobs := []*job.Job{newJob(""), newJob(""), newJob("")}
	failing := jobs[1].ID
	f := &fakeClient{
		update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			id := strings.TrimPrefix(pkOf(in.Key), jobPrefix)
			if id == failing {
				return nil, throttled()
			}
			for _, j := range jobs {
				if j.ID == id {
					started := j.Clone()
					policy.Start(job.Message{ID: id}, "w", t0).Set.Apply(started)
					return &dynamodb.UpdateItemOutput{Attributes: encodeJob(started)}, nil
				}
			}
			return nil, &types.ConditionalCheckFailedException{Message: aws.String("no item")}
		},
		put: func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
			if pkOf(in.Item) == jobPK(failing) {
				return nil, throttled()
			}
			return &dynamodb.PutItemOutput{}, nil
		},
	}
	d := newFakeDriver(f)
	ctx := t.Context()
	var changes []job.Change
	for _, j := range jobs {
		changes = append(changes, policy.Start(job.Message{ID: j.ID}, "w", t0))
	}
	missing := job.NewID(t0)
	changes = append(changes, policy.Start(job.Message{ID: missing}, "w", t0))
	res, err := d.Apply(ctx, changes)
	require.NoError(t, err, "some entries were answered: no call error")
	require.NoError(t, res[0].Err)
	require.Equal(t, job.Running, res[0].Job.Status)
	requireCode(t, errcode.Unavailable, res[1].Err)
	require.Nil(t, res[1].Job)
	require.NoError(t, res[2].Err)
	requireCode(t, errcode.NotFound, res[3].Err)

	cres, err := d.Create(ctx, jobs)
	require.NoError(t, err)
	require.NoError(t, cres[0].Err)
	requireCode(t, errcode.Unavailable, cres[1].Err)
	require.NoError(t, cres[2].Err)

	// When no entry gets an answer, the call fails.
	_, err = d.Apply(ctx, changes[1:2])
	requireCode(t, errcode.Unavailable, err)
	_, err = d.Create(ctx, jobs[1:2])
	requireCode(t, errcode.Unavailable, err)
}

func TestBatchOrderPerJob(t *testing.T) {
	t.Parallel()
	// Changes of one job run one after another in batch order; changes of
	// different jobs run at once.
	a, b := newJob(""), newJob("")
	var mu sync.Mutex
	var order []string
	inFlight := map[string]bool{}
	release := make(chan struct{})
	var bothIn sync.WaitGroup
	bothIn.Add(2)
	f := &fakeClient{update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		id := strings.TrimPrefix(pkOf(in.Key), jobPrefix)
		mu.Lock()
		if inFlight[id] {
			mu.Unlock()
			return nil, errors.New("two changes of one job at once")
		}
		inFlight[id] = true
		first := len(order) < 2
		order = append(order, id+":"+setValue(in, job.FieldDetail.String()))
		mu.Unlock()
		if first { // the first change of each job waits until both are in flight
			bothIn.Done()
			<-release
		}
		mu.Lock()
		inFlight[id] = false
		mu.Unlock()
		return nil, &types.ConditionalCheckFailedException{Message: aws.String("no item")}
	}}
	d := newFakeDriver(f)
	note := func(j *job.Job, detail string) job.Change { return policy.Note(j, t0, detail) }
	go func() { bothIn.Wait(); close(release) }()
	res, err := d.Apply(t.Context(), []job.Change{note(a, "a1"), note(b, "b1"), note(a, "a2"), note(a, "a3")})
	require.NoError(t, err)
	for _, r := range res {
		requireCode(t, errcode.NotFound, r.Err)
	}
	var aOrder []string
	for _, o := range order {
		if strings.HasPrefix(o, a.ID) {
			aOrder = append(aOrder, strings.TrimPrefix(o, a.ID+":"))
		}
	}
	require.Equal(t, []string{"a1", "a2", "a3"}, aOrder)
}

// setValue returns the string an UpdateItem sets attribute attr to.
func setValue(in *dynamodb.UpdateItemInput, attr string) string {
	for p, name := range in.ExpressionAttributeNames {
		if name != attr {
			continue
		}
		_, rest, ok := strings.Cut(aws.ToString(in.UpdateExpression), p+" = ")
		if !ok {
			return ""
		}
		v, _, _ := strings.Cut(rest, ",")
		v, _, _ = strings.Cut(v, " ")
		if sv, ok := in.ExpressionAttributeValues[v].(*types.AttributeValueMemberS); ok {
			return sv.Value
		}
	}
	return ""
}

func TestOpen(t *testing.T) {
	t.Parallel()
	_, err := OpenDriver(t.Context(), &fakeClient{describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return nil, &types.ResourceNotFoundException{Message: aws.String("Requested resource not found")}
	}}, "nope", nil)
	requireCode(t, errcode.NotFound, err)
	require.Contains(t, err.Error(), "CreateTable")

	_, err = OpenDriver(t.Context(), nil, "jobs", nil)
	requireCode(t, errcode.InvalidArgument, err)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = OpenDriver(ctx, &fakeClient{describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return nil, ctx.Err()
	}}, "jobs", nil)
	requireCode(t, errcode.Canceled, err)
}

// Open takes a table with the indexes it reads, as CreateTableInput defines
// them or wider, and refuses any other with FailedPrecondition saying what
// is wrong.
func TestOpenChecksIndexes(t *testing.T) {
	t.Parallel()
	index := func(out *dynamodb.DescribeTableOutput, name string) *types.GlobalSecondaryIndexDescription {
		for i, ix := range out.Table.GlobalSecondaryIndexes {
			if aws.ToString(ix.IndexName) == name {
				return &out.Table.GlobalSecondaryIndexes[i]
			}
		}
		panic("no index " + name)
	}
	current := func() *dynamodb.DescribeTableOutput { return describeTable(CreateTableInput("jobs")) }
	for _, c := range []struct {
		name  string
		table func() *dynamodb.DescribeTableOutput
		want  []string // in the error; none: opens
	}{
		{"as created", current, nil},
		{"earlier layout", func() *dynamodb.DescribeTableOutput { return describeTable(earlierTableInput("jobs")) },
			[]string{`earlier index layout ("due", "owned")`, `no index "active"`, "UpdateTable", `delete "due" and "owned"`}},
		{"migrating: earlier indexes beside active", func() *dynamodb.DescribeTableOutput {
			out := current()
			out.Table.GlobalSecondaryIndexes = append(out.Table.GlobalSecondaryIndexes,
				describeTable(earlierTableInput("jobs")).Table.GlobalSecondaryIndexes[:2]...)
			return out
		}, nil},
		{"active projects everything", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).Projection = &types.Projection{ProjectionType: types.ProjectionTypeAll}
			return out
		}, nil},
		{"active projects more", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).Projection.NonKeyAttributes = []string{AttrType, AttrOwner}
			return out
		}, nil},
		{"active without owner", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).Projection = &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}
			return out
		}, []string{`index "active" that does not project "owner"`, "delete it and add it again"}},
		{"list without type", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexList).Projection.NonKeyAttributes = []string{AttrOwner}
			return out
		}, []string{`index "list" that does not project "type"`}},
		{"active with other keys", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).KeySchema[1].AttributeName = aws.String(AttrID)
			return out
		}, []string{`index "active" that has the keys "due_pk", "id", not "due_pk", "due_at"`}},
		{"active without a sort key", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).KeySchema = index(out, IndexActive).KeySchema[:1]
			return out
		}, []string{`index "active" that has the keys "due_pk", ""`}},
		{"due_at a string", func() *dynamodb.DescribeTableOutput {
			out := current()
			for i, a := range out.Table.AttributeDefinitions {
				if aws.ToString(a.AttributeName) == AttrDueAt {
					out.Table.AttributeDefinitions[i].AttributeType = types.ScalarAttributeTypeS
				}
			}
			return out
		}, []string{`the key "due_at" of type S, not N`}},
		{"active being built", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).IndexStatus = types.IndexStatusCreating
			return out
		}, []string{`index "active" that is CREATING`}},
		{"active updating", func() *dynamodb.DescribeTableOutput {
			out := current()
			index(out, IndexActive).IndexStatus = types.IndexStatusUpdating
			return out
		}, nil},
		{"no list", func() *dynamodb.DescribeTableOutput {
			out := current()
			out.Table.GlobalSecondaryIndexes = out.Table.GlobalSecondaryIndexes[:1]
			return out
		}, []string{`no index "list"`}},
		{"no indexes", func() *dynamodb.DescribeTableOutput {
			out := current()
			out.Table.GlobalSecondaryIndexes = nil
			return out
		}, []string{`no index "active" (see dynamojobstore.CreateTableInput)`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := c.table()
			_, err := OpenDriver(t.Context(), &fakeClient{describe: func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
				return out, nil
			}}, "jobs", nil)
			if c.want == nil {
				require.NoError(t, err)
				return
			}
			requireCode(t, errcode.FailedPrecondition, err)
			require.Contains(t, err.Error(), `open job store: table "jobs" `)
			for _, w := range c.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

// Index entries may lag the records (AWS updates global secondary indexes
// asynchronously): Due and Owned re-check the records they read.
func TestIndexLagIsHarmless(t *testing.T) {
	t.Parallel()
	queued, moved, gone := newJob(""), newJob(""), newJob("")
	policy.Start(job.Message{ID: moved.ID}, "w1", t0).Set.Apply(moved) // RUNNING now; the index still says QUEUED
	entry := func(j *job.Job) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{AttrPK: s(jobPK(j.ID)), AttrDueAt: n(millis(queued.DueAt))}
	}
	f := &fakeClient{
		// The index has each of the three both QUEUED and RUNNING with
		// owner w1: behind the records of all of them.
		query: func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
			vals := map[string]bool{}
			for _, v := range in.ExpressionAttributeValues {
				if sv, ok := v.(*types.AttributeValueMemberS); ok {
					vals[sv.Value] = true
				}
			}
			var items []map[string]types.AttributeValue
			for _, j := range []*job.Job{queued, moved, gone} {
				owned := in.FilterExpression != nil && vals["w1"] && vals[DefaultLayout.duePK(job.Running, j.ID)]
				if owned || (in.FilterExpression == nil && vals[DefaultLayout.duePK(job.Queued, j.ID)]) {
					items = append(items, entry(j))
				}
			}
			return &dynamodb.QueryOutput{Items: items}, nil
		},
		batchGet: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			require.True(t, aws.ToBool(in.RequestItems["jobs"].ConsistentRead))
			return &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{
				"jobs": {encodeJob(queued), encodeJob(moved)}, // gone was deleted (TTL)
			}}, nil
		},
	}
	d := newFakeDriver(f)
	due, err := d.Due(t.Context(), job.Queued, queued.DueAt.Add(time.Hour), 10)
	require.NoError(t, err)
	require.Equal(t, []string{queued.ID}, ids(due))
	owned, err := d.Owned(t.Context(), "w1", 10)
	require.NoError(t, err)
	require.Equal(t, []string{moved.ID}, ids(owned))
}

// Owned queries every RUNNING shard of the active index, filtered by owner,
// to its last page (a page may hold no match and still not be the last),
// and returns the records in id order, at most limit.
func TestOwnedQueries(t *testing.T) {
	t.Parallel()
	var mine []*job.Job
	for i := range 5 {
		j := newJob("")
		j.ID = job.NewID(t0.Add(time.Duration(i) * time.Millisecond))
		policy.Start(job.Message{ID: j.ID}, "w1", t0).Set.Apply(j)
		mine = append(mine, j)
	}
	var mu sync.Mutex
	pages := map[string]int{} // queries per shard
	f := &fakeClient{
		// Runs on the driver's goroutines: it reports problems as errors,
		// which Owned returns.
		query: func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
			cond, filter := aws.ToString(in.KeyConditionExpression), aws.ToString(in.FilterExpression)
			k, v, _ := strings.Cut(cond, " = ")
			fk, fv, _ := strings.Cut(filter, " = ")
			shard, _ := in.ExpressionAttributeValues[v].(*types.AttributeValueMemberS)
			who, _ := in.ExpressionAttributeValues[fv].(*types.AttributeValueMemberS)
			if aws.ToString(in.IndexName) != IndexActive || aws.ToBool(in.ConsistentRead) ||
				in.ExpressionAttributeNames[k] != AttrDuePK || shard == nil || !strings.HasPrefix(shard.Value, string(job.Running)+"#") ||
				in.ExpressionAttributeNames[fk] != AttrOwner || who == nil || who.Value != "w1" {
				return nil, fmt.Errorf("unexpected query: index %q, %q, filter %q, names %v, values %v",
					aws.ToString(in.IndexName), cond, filter, in.ExpressionAttributeNames, in.ExpressionAttributeValues)
			}
			mu.Lock()
			page := pages[shard.Value]
			pages[shard.Value]++
			mu.Unlock()
			var items []map[string]types.AttributeValue
			for _, j := range mine {
				if DefaultLayout.duePK(job.Running, j.ID) == shard.Value {
					items = append(items, map[string]types.AttributeValue{AttrPK: s(jobPK(j.ID))})
				}
			}
			// Three pages per shard: an empty one, the matches, an empty one.
			from := pkOf(in.ExclusiveStartKey)
			switch {
			case page == 0 && in.ExclusiveStartKey == nil:
				return &dynamodb.QueryOutput{LastEvaluatedKey: map[string]types.AttributeValue{AttrPK: s("p1")}}, nil
			case page == 1 && from == "p1":
				return &dynamodb.QueryOutput{Items: items, LastEvaluatedKey: map[string]types.AttributeValue{AttrPK: s("p2")}}, nil
			case page == 2 && from == "p2":
				return &dynamodb.QueryOutput{}, nil
			}
			return nil, fmt.Errorf("shard %s: query %d from %q", shard.Value, page, from)
		},
		batchGet: func(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			out := &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{}}
			for _, k := range in.RequestItems["jobs"].Keys {
				for _, j := range mine {
					if pkOf(k) == jobPK(j.ID) {
						out.Responses["jobs"] = append(out.Responses["jobs"], encodeJob(j))
					}
				}
			}
			return out, nil
		},
	}
	d := newFakeDriver(f)
	got, err := d.Owned(t.Context(), "w1", 3)
	require.NoError(t, err)
	require.Equal(t, ids(mine[:3]), ids(got), "the first 3 by id")
	require.Len(t, pages, DefaultLayout.DueShards)
	for shard, n := range pages {
		require.Equal(t, 3, n, "shard %s read to its end", shard)
	}
}

func ids(jobs []*job.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

// Keys BatchGetItem leaves unprocessed are read one by one.
func TestUnprocessedKeys(t *testing.T) {
	t.Parallel()
	a, b := newJob(""), newJob("")
	f := &fakeClient{
		query: func(in *dynamodb.QueryInput) (*dynamodb.QueryOutput, error) {
			return &dynamodb.QueryOutput{Items: []map[string]types.AttributeValue{
				{AttrPK: s(jobPK(a.ID)), AttrID: s(a.ID), AttrListPK: s("x")},
				{AttrPK: s(jobPK(b.ID)), AttrID: s(b.ID), AttrListPK: s("x")},
			}}, nil
		},
		batchGet: func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
			return &dynamodb.BatchGetItemOutput{
				Responses:       map[string][]map[string]types.AttributeValue{"jobs": {encodeJob(a)}},
				UnprocessedKeys: map[string]types.KeysAndAttributes{"jobs": {Keys: []map[string]types.AttributeValue{{AttrPK: s(jobPK(b.ID))}}}},
			}, nil
		},
		get: func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			require.Equal(t, jobPK(b.ID), pkOf(in.Key))
			require.True(t, aws.ToBool(in.ConsistentRead))
			return &dynamodb.GetItemOutput{Item: encodeJob(b)}, nil
		},
	}
	got, err := newFakeDriver(f).fetch(t.Context(), []string{a.ID, b.ID}, "test")
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, b.PayloadHash, got[b.ID].PayloadHash)
}

func TestCorruptItem(t *testing.T) {
	t.Parallel()
	j := newJob("")
	for name, corrupt := range map[string]func(map[string]types.AttributeValue){
		"status as a number": func(it map[string]types.AttributeValue) { it[attrStatus] = n(1) },
		"bad id":             func(it map[string]types.AttributeValue) { it[AttrID] = s("x") },
		"attempt as text":    func(it map[string]types.AttributeValue) { it[attrAttempt] = s("1") },
		"history entry": func(it map[string]types.AttributeValue) {
			it[AttrHistory] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"1": s("x")}}
		},
		"unknown status": func(it map[string]types.AttributeValue) { it[attrStatus] = s("LOST") },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			item := encodeJob(j)
			corrupt(item)
			f := &fakeClient{get: func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				return &dynamodb.GetItemOutput{Item: item}, nil
			}}
			_, err := newFakeDriver(f).Get(t.Context(), j.ID)
			requireCode(t, errcode.Internal, err)
		})
	}
}

func TestUseAfterClose(t *testing.T) {
	t.Parallel()
	f := &fakeClient{}
	d := newFakeDriver(f)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close())
	calls := len(f.calls)
	_, err := d.Get(t.Context(), newJob("").ID)
	requireCode(t, errcode.Closed, err)
	_, err = d.Create(t.Context(), []*job.Job{newJob("")})
	requireCode(t, errcode.Closed, err)
	require.Equal(t, calls, len(f.calls), "no calls after Close")
}

// The condition expression and condHolds (which decides whether a loss was
// only the key guard's) agree with job.Cond.Holds on records as stored.
func TestCondHoldsMatchesCond(t *testing.T) {
	t.Parallel()
	base := running("")
	base.LeaseUntil = t0.Add(time.Minute).Truncate(time.Millisecond)
	for _, c := range []job.Cond{
		{Status: job.Running, Attempt: 1},
		{Status: job.Running, Attempt: 2},
		{Status: job.Queued, Attempt: 1},
		{Status: job.Running, Attempt: 1, Owner: "w1"},
		{Status: job.Running, Attempt: 1, Owner: "w2"},
		{Status: job.Running, Attempt: 1, Rev: base.Rev},
		{Status: job.Running, Attempt: 1, Rev: base.Rev + 1},
		{Status: job.Running, Attempt: 1, LeaseExpiredBefore: base.LeaseUntil},
		{Status: job.Running, Attempt: 1, LeaseExpiredBefore: base.LeaseUntil.Add(time.Millisecond)},
		{Status: job.Running, Attempt: 1, LeaseExpiredBefore: base.LeaseUntil.Add(-time.Millisecond)},
	} {
		require.Equal(t, c.Holds(base), condHolds(c, base), "%+v", c)
	}
	// Sub-millisecond: never early.
	c := job.Cond{Status: job.Running, Attempt: 1, LeaseExpiredBefore: base.LeaseUntil.Add(500 * time.Microsecond)}
	require.True(t, c.Holds(base))
	require.False(t, condHolds(c, base))
}

func TestItemRoundTrip(t *testing.T) {
	t.Parallel()
	j := running("k")
	j.Progress = []byte(" {\"p\" : 1}\n")
	j.CancelRequested = true
	j.Timeout = job.Duration(90 * time.Second)
	policy.Finish(j, t0.Add(time.Second), job.End{Outcome: job.OutcomeSucceeded, Result: []byte(`"r"`), ResultRef: "ref"}).Set.Apply(j)
	toUTC(j)
	got, err := decodeJob(encodeJob(j))
	require.NoError(t, err)
	if diff := cmp.Diff(j, got, cmp.Comparer(func(a, b time.Time) bool { return a.Sub(b).Abs() < time.Millisecond })); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	item := encodeJob(j)
	require.Equal(t, n(ttlSeconds(j.ExpiresAt)), item[AttrTTL])
	require.NotContains(t, item, AttrDuePK, "terminal jobs are not in the due index")
	require.NotContains(t, item, attrOwner, "empty values are not stored")
}

func TestItemSize(t *testing.T) {
	t.Parallel()
	item := map[string]types.AttributeValue{
		"ab":  s("héllo"),                                                                        // 2 + 6
		"n":   n(123456),                                                                         // 1 + 3 digits pairs + 1
		"bin": b([]byte{0, 1, 2}),                                                                // 3 + 3
		"ok":  boolean(true),                                                                     // 2 + 1
		"m":   &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": s("v")}}, // 1 + 3 + (1 + 1 + 1)
	}
	require.Equal(t, 8+5+6+3+7, ItemSize(item))
	require.Equal(t, 2, numberSize("-0.100"))
	require.Equal(t, 11, numberSize("1234567890123456789"))
}
