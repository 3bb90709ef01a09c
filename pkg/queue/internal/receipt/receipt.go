// Package receipt is the receipt-handle format the local queue adapters
// (sqlitequeue, memqueue) share: "<message id>.<token>", where the message
// id is a ULID and the token 16 bytes in lower-case hex, new for every
// receive, so that only the latest handle of a message matches.
package receipt

import (
	"strings"

	"github.com/oklog/ulid/v2"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

// TokenLen is the length of a token in hex digits.
const TokenLen = 32

// Handle returns the receipt handle of message id with token.
func Handle(id, token string) string { return id + "." + token }

// Parse splits a receipt handle into message id and token; ok is false for
// a handle a local adapter cannot have issued.
func Parse(h string) (id, token string, ok bool) {
	id, token, ok = strings.Cut(h, ".")
	if !ok || len(token) != TokenLen {
		return "", "", false
	}
	if _, err := ulid.ParseStrict(id); err != nil {
		return "", "", false
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", "", false
		}
	}
	return id, token, true
}

// Invalid is the error for a malformed handle (SQS's
// ReceiptHandleIsInvalid).
func Invalid(h string) error {
	return errcode.New(errcode.InvalidArgument, "%q is not a receipt handle", h)
}
