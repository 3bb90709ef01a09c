package errcode_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobfleet/jobfleet/pkg/errcode"
)

type matcher struct{}

func (matcher) Error() string        { return "custom" }
func (matcher) Is(target error) bool { return target == errcode.InvalidArgument }

func TestOf(t *testing.T) {
	t.Parallel()
	base := errcode.New(errcode.NotFound, "job %s not found", "x")
	wrapped := fmt.Errorf("get: %w", base)
	require.Equal(t, errcode.NotFound, errcode.Of(wrapped))
	require.True(t, errors.Is(wrapped, errcode.NotFound))
	require.False(t, errors.Is(wrapped, errcode.AlreadyExists))
	require.Equal(t, "job x not found", base.Error())

	cause := errors.New("disk on fire")
	w := errcode.Wrap(errcode.Unavailable, cause, "write %d", 3)
	require.Equal(t, "write 3: disk on fire", w.Error())
	require.ErrorIs(t, w, cause)
	require.True(t, errcode.Retryable(w))
	require.Nil(t, errcode.Wrap(errcode.Internal, nil, "x"))

	require.Equal(t, errcode.FailedPrecondition, errcode.Of(fmt.Errorf("x: %w", errcode.FailedPrecondition)))
	require.Equal(t, errcode.InvalidArgument, errcode.Of(fmt.Errorf("x: %w", matcher{})))
	require.Equal(t, errcode.Canceled, errcode.Of(fmt.Errorf("x: %w", context.Canceled)))
	require.Equal(t, errcode.Canceled, errcode.Of(context.DeadlineExceeded))
	require.Equal(t, errcode.Unknown, errcode.Of(errors.New("plain")))
	require.Equal(t, errcode.Unknown, errcode.Of(nil))
	require.False(t, errcode.Retryable(errors.New("plain")))
	require.Equal(t, "code(200)", errcode.Code(200).String())
}
