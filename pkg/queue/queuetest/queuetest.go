// Package queuetest is the conformance suite for queue.Driver adapters.
//
// Every adapter runs it unchanged from one conformance_test.go:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T, cfg queuetest.Config) queuetest.Harness {
//			// make a fresh queue (and its dead-letter queue) named from
//			// queuetest.Name(t), register its cleanup, return it.
//		})
//	}
//
// The suite drives the adapter through queue.Queue, so it also pins down
// the validation Queue does in front of every Driver. It pins the semantics
// of an SQS standard queue as the queue package documents them: visibility
// timeouts and redelivery, receive counts, receipt handles (only the latest
// acts), ChangeVisibility limits, dead-lettering, batches with per-entry
// results, long polling, context cancellation, use after Close and error
// codes.
//
// Beyond the queue package doc, the suite pins these (all as SQS does):
//
//   - A malformed receipt handle fails its entry with
//     errcode.InvalidArgument (SQS: ReceiptHandleIsInvalid).
//   - The latest handle deletes its message even after the visibility
//     timeout expired, until the message is received again.
//   - A dead-lettered message keeps its id and SentAt, and its receive
//     count goes on: its first receive from the DLQ says MaxReceives+1.
//   - SentAt is UTC, to the millisecond at best.
//   - A context that has ended before a call fails it with
//     errcode.Canceled (Receive with Wait included) and changes nothing;
//     one that ends while Receive waits returns no error.
//   - Close ends a waiting Receive promptly (no messages; nil or
//     errcode.Closed); the Driver itself answers errcode.Closed after
//     Close; closing one handle leaves other handles on the queue working.
//
// It leaves open: ChangeVisibility with the latest handle after the
// timeout expired but before another receive (SQS may answer
// MessageNotInflight), delivery order, and duplicate deliveries (allowed;
// the concurrency case logs how many it saw).
//
// Time: cases that need time to pass call Harness.Advance, which advances a
// fake clock or, for an adapter on real time, sleeps. Durations are kept to
// one or two seconds so the suite stays fast on real time, and every
// "has passed" step adds a small slack. Long-poll waits are always real
// time (they are what is being measured). Cases that need a fake clock to
// be practical (the 12-hour visibility limit) run only when
// Harness.FakeTime is set.
//
// Every case runs as a parallel subtest with its own harness. On real time
// most of a case is spent in Advance, so run an adapter on real time with
// a higher -parallel (e.g. 16) than the default GOMAXPROCS.
//
// Quirks: a harness may list known ways its backend falls short of the
// SQS behaviour pinned here (Harness.Quirks; moto, the offline stand-in
// for SQS, has some). A case that depends on such a behaviour skips, naming
// the quirk and what SQS does, so the gap shows in every run rather than
// being hidden by a weaker assertion; the adapter pins the SQS behaviour
// in its own tests instead.
//
// Depth is exact in the cases here; an adapter whose backend only
// approximates counts must make them exact (or eventually exact within a
// few seconds, which the suite tolerates on real time).
package queuetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"strings"
	"testing"
	"time"

	"github.com/jobfleet/jobfleet/pkg/clock"
	"github.com/jobfleet/jobfleet/pkg/queue"
)

// Config says what queue a test needs.
type Config struct {
	// Visibility is the queue's default visibility timeout: whole seconds,
	// more than zero.
	Visibility time.Duration
	// MaxReceives, when more than zero, gives the queue a dead-letter
	// queue (Harness.DLQ) and the receive count after which a message
	// moves there.
	MaxReceives int
}

// Harness is one fresh, isolated queue made for one test. The harness
// function registers its cleanup (t.Cleanup); the suite may close the
// queues itself first.
type Harness struct {
	// Queue is the queue under test, configured as Config says.
	Queue *queue.Queue
	// DLQ is Queue's dead-letter queue when Config.MaxReceives > 0, else nil.
	DLQ *queue.Queue
	// Advance lets d pass: it advances the adapter's fake clock, or sleeps
	// when the adapter runs on real time.
	Advance func(d time.Duration)
	// FakeTime reports that Advance is instant, so cases may let hours pass.
	FakeTime bool
	// Clock is the time the adapter stamps messages with (SentAt); nil
	// means the real clock.
	Clock clock.Clock
	// Quirks lists the backend's known gaps from SQS; the cases that
	// depend on them skip. Empty for a backend that behaves as SQS does.
	Quirks []Quirk
	// Open, if set, opens another handle on a queue of the same backend by
	// name, as another process would. The suite opens Queue's own name (a
	// second handle) and a name that does not exist (errcode.NotFound).
	// Handles it opens it closes itself.
	Open func(ctx context.Context, name string) (*queue.Queue, error)
}

// Quirk names a known gap between a backend and the SQS behaviour the
// suite pins down.
type Quirk string

const (
	// OldHandlesAct: a receipt handle a message had before its latest
	// receive still deletes it and changes its visibility (moto accepts
	// every handle a message ever had).
	OldHandlesAct Quirk = "OldHandlesAct"
	// DeletedHandleMalformed: ChangeVisibility with the handle of a
	// deleted message fails as a malformed handle (moto answers
	// ReceiptHandleIsInvalid).
	DeletedHandleMalformed Quirk = "DeletedHandleMalformed"
	// ConcurrentCallsRace: concurrent receives and deletes on one queue
	// race inside the backend (moto's SQS model takes no lock): a receive
	// may return a receipt handle the backend then does not know, and two
	// deletes of different messages may undo one another.
	ConcurrentCallsRace Quirk = "ConcurrentCallsRace"
)

// quirkSQS says, for each quirk, what SQS does instead.
var quirkSQS = map[Quirk]string{
	OldHandlesAct: "SQS acts only on the latest receipt handle: DeleteMessage with an older one " +
		"succeeds without deleting, ChangeMessageVisibility with one fails " +
		"(InvalidParameterValue: message not available for visibility timeout change)",
	DeletedHandleMalformed: "SQS answers ChangeMessageVisibility for a deleted message with InvalidParameterValue " +
		"\"Message does not exist or is not available for visibility timeout change\" (FailedPrecondition), " +
		"keeping ReceiptHandleIsInvalid (InvalidArgument) for malformed handles",
	ConcurrentCallsRace: "SQS keeps each message consistent under concurrent calls: a receipt handle it returns " +
		"acts on its message (duplicate deliveries included), and deleting one message never brings back another",
}

// Run runs the conformance suite. newHarness makes a fresh queue per test
// and is called from many parallel tests.
func Run(t *testing.T, newHarness func(t *testing.T, cfg Config) Harness) {
	mk := func(t *testing.T, cfg Config) *env {
		t.Helper()
		h := newHarness(t, cfg)
		if h.Queue == nil || h.Advance == nil {
			t.Fatal("queuetest: the harness must set Queue and Advance")
		}
		if cfg.MaxReceives > 0 && h.DLQ == nil {
			t.Fatal("queuetest: Config.MaxReceives is set but the harness has no DLQ")
		}
		if h.Clock == nil {
			h.Clock = clock.Real{}
		}
		return &env{t: t, h: h, q: h.Queue, ctx: t.Context()}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, mk)
		})
	}
}

// Name returns a queue name for t that is valid everywhere (SQS allows
// 1-80 letters, digits, hyphens and underscores), derived from t.Name() and
// unique to this call, with room for a suffix such as "-dlq".
func Name(t testing.TB) string {
	n := []byte(t.Name())
	for i, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			n[i] = '_'
		}
	}
	s := string(n)
	if len(s) > 48 {
		h := fnv.New32a()
		h.Write(n)
		s = s[:39] + "-" + hex.EncodeToString(h.Sum(nil))
	}
	var r [3]byte
	_, _ = rand.Read(r[:])
	return strings.Trim(s, "_") + "-" + hex.EncodeToString(r[:])
}

type testCase struct {
	name string
	fn   func(t *testing.T, mk func(*testing.T, Config) *env)
}

var cases = []testCase{
	{"RoundTrip", testRoundTrip},
	{"MessageSize", testMessageSize},
	{"BatchSendPartialFailure", testBatchSend},
	{"Delay", testDelay},
	{"Visibility", testVisibility},
	{"ChangeVisibility", testChangeVisibility},
	{"Delete", testDelete},
	{"DeadLetter", testDeadLetter},
	{"Depth", testDepth},
	{"LongPoll", testLongPoll},
	{"AtLeastOnceConcurrent", testConcurrent},
	{"Validation", testValidation},
	{"CanceledContext", testCanceledContext},
	{"Closed", testClosed},
	{"NotFound", testNotFound},
}
