package sqlitequeue_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/jobfleet/jobfleet/pkg/queue"
	"github.com/jobfleet/jobfleet/pkg/queue/sqlitequeue"
)

// epoch is where fake clocks start (with milliseconds, as stored).
var epoch = time.Date(2031, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

// The test binary doubles as the other process of multi-process tests:
// with childRole set it runs runChild instead of the tests.
const (
	childRole  = "SQLITEQUEUE_TEST_CHILD"
	childDB    = "SQLITEQUEUE_TEST_DB"
	childQueue = "SQLITEQUEUE_TEST_QUEUE"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(childRole); role != "" {
		if err := runChild(role, os.Getenv(childDB), os.Getenv(childQueue), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// runChild plays one role on the queue database at path, on the real clock:
//
//   - "receive": prints "ready", then receives and deletes until a receive
//     waiting 500 ms finds nothing, printing "got <id>" for each message.
//   - "send": prints "ready", then for each line "send <body>" on in sends
//     the body and prints "sent"; returns at EOF.
func runChild(role, path, name string, in io.Reader, out io.Writer) error {
	ctx := context.Background() // the parent kills this process if it hangs
	db, err := sqlitequeue.OpenDB(ctx, path, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	q, err := db.Open(ctx, name)
	if err != nil {
		return err
	}
	defer q.Close()
	fmt.Fprintln(out, "ready")
	switch role {
	case "receive":
		for {
			msgs, err := q.Receive(ctx, queue.ReceiveOptions{Max: queue.MaxBatch, Wait: 500 * time.Millisecond})
			if err != nil {
				return err
			}
			if len(msgs) == 0 {
				return nil
			}
			handles := make([]string, len(msgs))
			for i, m := range msgs {
				fmt.Fprintln(out, "got", m.ID)
				handles[i] = m.Handle
			}
			if _, err := q.Delete(ctx, handles...); err != nil {
				return err
			}
		}
	case "send":
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			b, ok := strings.CutPrefix(sc.Text(), "send ")
			if !ok {
				return fmt.Errorf("unknown command %q", sc.Text())
			}
			res, err := q.Send(ctx, queue.SendEntry{Body: []byte(b)})
			if err != nil {
				return err
			}
			if res[0].Err != nil {
				return res[0].Err
			}
			fmt.Fprintln(out, "sent")
		}
		return sc.Err()
	}
	return fmt.Errorf("unknown role %q", role)
}

// child is a running child process.
type child struct {
	stdin io.WriteCloser
	lines chan string // its stdout, line by line; closed at EOF
}

// startChild starts the test binary as a child in role on the queue
// database at path and waits for it to be ready. Cleanup closes its stdin
// and waits for it to exit.
func startChild(t *testing.T, role, path, name string) *child {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childRole+"="+role, childDB+"="+path, childQueue+"="+name)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	c := &child{stdin: stdin, lines: make(chan string, 1024)}
	read := make(chan struct{})
	go func() {
		defer close(read)
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		<-read
		err := cmd.Wait()
		cancel()
		require.NoError(t, err, "child %s", role)
	})
	require.Equal(t, "ready", c.next(t))
	return c
}

// next returns the child's next line of output.
func (c *child) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		require.True(t, ok, "child exited")
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no output from child")
		return ""
	}
}
